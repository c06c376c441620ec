"""Near-duplicate images: matches for one image or item, and collection-wide duplicate groups.

Two images are near-duplicates when the cosine similarity of their embeddings is above the
model's duplicate threshold. Everything here asks the store's ANN index for "neighbours above
the threshold"; nothing ever builds an all-pairs matrix.

Threshold
    ``ModelSpec.duplicate_threshold`` is the per-model default (override it per call, or in
    a registered model's manifest). For real DINOv2/DINOv3 weights it is 0.95: DINO
    duplicate detectors use 0.95 to decide "two photos show the same content" (and 0.98 for
    strict copies only), and each model needs its own value. Measure yours with
    ``calibrate_threshold`` on pairs you know to be duplicates and pairs you know are not:
    when every duplicate scores above every distinct pair it returns the midpoint between the
    lowest duplicate and the highest distinct score (the widest margin on both sides);
    otherwise the cut with the fewest misclassified pairs, the highest such cut on ties (a
    false merge costs a reviewer more than a missed duplicate, which ``near_duplicates`` still
    finds at a lower threshold). The random-weight test model, calibrated on 12 synthetic
    pictures with 4 near-duplicates each (crop, half size, JPEG q40, mirror; see
    ``tests/ingest/test_duplicates.py``), gives 0.962: lowest duplicate pair 0.971, highest
    distinct pair 0.953. Its pictures differ only in gradients and shapes, and on larger sets
    its distinct pairs reach 0.99, so that value is for tests only.

Groups
    A background scan reads every point page by page and asks the index for that point's
    neighbours above the threshold (at most ``max_neighbors``): O(points) queries, memory
    O(points + edges), never a points x points matrix. Without ``transitive``, seeds are taken
    most-connected first (then by point id), and a seed admits its not yet grouped neighbours,
    best first, that are also neighbours of every member admitted so far: every pair in a
    group is a duplicate pair, so A~B and B~C never put A and C together unless A~C. With
    ``transitive``, groups are the connected components of the duplicate graph (A~B~C is one
    group however long the chain), members scored against the most connected point. Pairs
    reviewers marked "not a duplicate" are not edges. Of more than ``max_neighbors`` identical
    copies of one image, a scan groups those the capped answers name (transitive: all).
"""
