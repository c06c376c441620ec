// Lookalike admin: small progressive enhancements. Every form also works without this file.
"use strict";

(function () {
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  // --- forms that submit themselves (pointer only: keyboard users press the form's button) ---
  let modality = "keyboard";
  document.addEventListener("pointerdown", () => { modality = "pointer"; }, true);
  document.addEventListener("keydown", () => { modality = "keyboard"; }, true);
  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field instanceof HTMLElement && field.hasAttribute("data-autosubmit") && modality === "pointer") {
      field.form?.requestSubmit();
    }
  });

  // --- side panels folded on narrow screens (open in the HTML, so they work without JS) ---
  if (window.matchMedia("(max-width: 800px)").matches) {
    document.querySelectorAll("details[data-collapse-narrow]").forEach((panel) => { panel.open = false; });
  }

  // --- range inputs that show their value ---
  document.querySelectorAll("input[type=range][data-output]").forEach((range) => {
    const output = document.getElementById(range.dataset.output);
    const show = () => { if (output) output.textContent = Number(range.value).toFixed(3); };
    range.addEventListener("input", show);
  });

  // --- confirmations before destructive actions ---
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // --- drop zones: drop image files (and a CSV) on a form ---
  document.querySelectorAll("[data-dropzone]").forEach((zone) => {
    const images = zone.querySelector('input[type=file][accept^="image"]');
    const csv = zone.querySelector('input[type=file][accept*="csv"]');
    let depth = 0;
    zone.addEventListener("dragenter", (event) => { event.preventDefault(); depth += 1; zone.classList.add("dragging"); });
    zone.addEventListener("dragover", (event) => { event.preventDefault(); });
    zone.addEventListener("dragleave", () => { depth -= 1; if (depth <= 0) { depth = 0; zone.classList.remove("dragging"); } });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("dragging");
      const dropped = Array.from(event.dataTransfer?.files || []);
      const pictures = new DataTransfer();
      const sheets = new DataTransfer();
      dropped.forEach((file) => {
        const isCsv = file.name.toLowerCase().endsWith(".csv") || file.type === "text/csv";
        (isCsv && csv ? sheets : pictures).items.add(file);
      });
      if (images && pictures.files.length) {
        if (!images.multiple && pictures.files.length > 1) {
          const first = new DataTransfer();
          first.items.add(pictures.files[0]);
          images.files = first.files;
        } else {
          images.files = pictures.files;
        }
      }
      if (csv && sheets.files.length) csv.files = sheets.files;
      // Dropping a query image is the search itself; an upload may still want its CSV.
      if (images && !images.multiple && images.files.length) zone.requestSubmit();
    });
  });

  // --- review actions without a page reload ---
  const say = (text) => {
    let region = document.getElementById("live-status");
    if (!region) {
      region = document.createElement("p");
      region.id = "live-status";
      region.className = "message message-info";
      region.setAttribute("role", "status");
      document.querySelector("main")?.prepend(region);
    }
    region.textContent = text;
  };

  async function post(form) {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
    let body = {};
    try { body = await response.json(); } catch (_) { body = {}; }
    if (!response.ok) {
      const message = body.error?.message || body.message || `The request failed (${response.status}).`;
      throw new Error(message);
    }
    return body;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.async || event.defaultPrevented) return;
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    try {
      const body = await post(form);
      if (form.dataset.async === "remove-card") removeCard(form, body.message);
      if (form.dataset.async === "retry") {
        form.hidden = true;
        const card = form.closest("[data-event]");
        if (card) setStatus(card, { status: "queued", reason: null, message: null });
        say(body.message || "Queued again.");
        pollBatch();
      }
    } catch (error) {
      say(error.message);
      if (button) button.disabled = false;
    }
  });

  function removeCard(form, message) {
    const card = form.closest(".card");
    const group = form.closest("[data-group]");
    const next = card?.nextElementSibling?.querySelector("button, a") || card?.previousElementSibling?.querySelector("a");
    card?.remove();
    if (group) {
      const left = group.querySelectorAll(".card.member").length;
      const size = group.querySelector("[data-group-size]");
      if (size) size.textContent = String(left + 1);
      if (left === 0) group.remove();
      updatePreview();
    }
    say(message || "Done.");
    if (next instanceof HTMLElement) next.focus(); else document.getElementById("main")?.focus();
  }

  // --- duplicates: preview a stricter threshold on the page's stored scores ---
  const slider = document.querySelector("[data-preview-groups]");
  function updatePreview() {
    if (!slider) return;
    const container = document.querySelector(slider.dataset.previewGroups);
    const summary = document.getElementById("preview-summary");
    const threshold = Number(slider.value);
    let groups = 0; let kept = 0; let images = 0;
    container?.querySelectorAll("[data-group]").forEach((group) => {
      groups += 1;
      let visible = 0;
      group.querySelectorAll(".card.member").forEach((card) => {
        const score = Number(card.dataset.score);
        const show = !(score < threshold);
        card.hidden = !show;
        if (show) visible += 1;
      });
      group.hidden = visible === 0;
      if (visible) { kept += 1; images += visible + 1; }
    });
    if (summary) {
      summary.textContent = `At ${threshold.toFixed(3)}: ${kept} of ${groups} groups on this page still hold duplicates (${images} images).`;
    }
  }
  slider?.addEventListener("input", updatePreview);

  // --- duplicate job progress ---
  const job = document.querySelector("[data-job-status]");
  if (job) {
    const progress = job.querySelector("progress");
    const text = document.getElementById("job-progress-text");
    const tick = async () => {
      try {
        const response = await fetch(job.dataset.jobStatus, { headers: { "Accept": "application/json" } });
        const state = await response.json();
        if (!response.ok) throw new Error(state.error?.message || "status unavailable");
        if (state.status === "done" || state.status === "failed") { window.location.reload(); return; }
        if (progress) { progress.max = state.points_total || 1; progress.value = state.points_scanned; }
        if (text) text.textContent = `${state.status}: ${state.points_scanned} of ${state.points_total ?? "?"} points scanned.`;
      } catch (error) {
        if (text) text.textContent = `Progress unavailable: ${error.message}`;
      }
      window.setTimeout(tick, 1000);
    };
    window.setTimeout(tick, 500);
  }

  // --- an upload's events, followed until done or failed ---
  const batch = document.querySelector("[data-batch-status]");
  let polling = false;
  function setStatus(card, entry) {
    card.className = card.className.replace(/status-\w+/, `status-${entry.status}`);
    const label = card.querySelector("[data-status]");
    const reason = card.querySelector("[data-reason]");
    if (label) label.textContent = entry.status;
    if (reason) reason.textContent = entry.reason ? `${entry.reason}: ${entry.message || ""}` : "";
    const retry = card.querySelector('form[data-async="retry"]');
    if (retry && entry.retryable !== undefined) retry.hidden = !entry.retryable;
  }
  async function pollBatch() {
    if (!batch || polling) return;
    polling = true;
    try {
      for (;;) {
        const response = await fetch(batch.dataset.batchStatus, { headers: { "Accept": "application/json" } });
        const state = await response.json();
        if (!response.ok) throw new Error(state.error?.message || "status unavailable");
        state.entries.forEach((entry) => {
          const card = document.querySelector(`[data-event="${CSS.escape(entry.event_id)}"]`);
          if (card) setStatus(card, entry);
        });
        batch.textContent = `${state.done} done, ${state.failed} failed, ${state.queued} queued.`;
        if (state.finished) break;
        await new Promise((resolve) => window.setTimeout(resolve, 1000));
      }
    } catch (error) {
      batch.textContent = `Status unavailable: ${error.message}`;
    } finally {
      polling = false;
    }
  }
  pollBatch();

  // --- ingestion numbers, refreshed ---
  const stats = document.querySelector("[data-stats]");
  if (stats) {
    const refresh = async () => {
      try {
        const response = await fetch(stats.dataset.stats, { headers: { "Accept": "application/json" } });
        if (response.ok) {
          const state = await response.json();
          const set = (name, value) => { const el = stats.querySelector(`[data-stat="${name}"]`); if (el) el.textContent = value; };
          set("queue_depth", state.queue_depth);
          set("dead_letters", state.dead_letters);
          Object.entries(state.per_second).forEach(([minutes, rate]) => set(`rate-${minutes}`, Number(rate).toFixed(2)));
        }
      } catch (_) { /* the numbers stay as they were */ }
      window.setTimeout(refresh, 5000);
    };
    window.setTimeout(refresh, 5000);
  }

  // --- explore map: the image of the hovered or focused point ---
  const map = document.querySelector("[data-map]");
  const tip = document.querySelector("[data-map-tip]");
  if (map && tip) {
    const image = tip.querySelector("img");
    const caption = tip.querySelector("p");
    const wrap = map.parentElement;
    const show = (point) => {
      image.src = point.dataset.thumb;
      image.alt = "";
      caption.textContent = point.dataset.label;
      tip.hidden = false;
      const dot = point.querySelector("circle").getBoundingClientRect();
      const box = wrap.getBoundingClientRect();
      let left = dot.right - box.left + 8;
      if (left + tip.offsetWidth > box.width) left = dot.left - box.left - tip.offsetWidth - 8;
      let top = dot.top - box.top - tip.offsetHeight / 2;
      top = Math.max(0, Math.min(top, box.height - tip.offsetHeight));
      tip.style.left = `${Math.max(0, left)}px`;
      tip.style.top = `${top}px`;
    };
    const hide = () => { tip.hidden = true; };
    map.querySelectorAll(".map-point").forEach((point) => {
      point.addEventListener("mouseenter", () => show(point));
      point.addEventListener("focus", () => show(point));
      point.addEventListener("mouseleave", hide);
      point.addEventListener("blur", hide);
    });
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") hide(); });
  }
})();
