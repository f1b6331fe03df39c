// Keeps running batches' rows and fields current by polling /ui/progress; no build step.
"use strict";

const POLL_MS = 1000;

function running() {
  return Array.from(document.querySelectorAll('[data-batch-id][data-terminal="false"]'));
}

function update(holder, batch) {
  const field = (name) => holder.querySelector(`[data-field="${name}"]`);
  const status = field("status");
  if (status) {
    status.textContent = batch.status;
    status.className = `status status-${batch.status}`;
  }
  const bar = field("progress");
  if (bar) {
    bar.max = Math.max(batch.total, 1);
    bar.value = batch.done;
    bar.textContent = `${batch.percent}%`;
  }
  for (const name of ["percent", "requests", "tokens", "finished"]) {
    const element = field(name);
    if (element) {
      element.textContent = name === "percent" ? `${batch.percent}%` : batch[name];
    }
  }
  if (batch.terminal) {
    holder.dataset.terminal = "true";
    if (holder.dataset.reloadWhenDone === "true") {
      window.location.reload(); // the files and their lines exist now
    }
  }
}

async function poll() {
  const holders = running();
  if (holders.length === 0) {
    return;
  }
  const query = holders.map((h) => `id=${encodeURIComponent(h.dataset.batchId)}`).join("&");
  try {
    const response = await fetch(`/ui/progress?${query}`, { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign(`/ui/login?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    if (response.ok) {
      const body = await response.json();
      for (const batch of body.batches) {
        for (const holder of holders.filter((h) => h.dataset.batchId === batch.id)) {
          update(holder, batch);
        }
      }
    }
  } catch (error) {
    // The gateway restarts or the network drops: the next poll tries again.
  }
  window.setTimeout(poll, POLL_MS);
}

// Review controls: j/k move between lines, a/r/g judge the current one, e edits its answer.
const VERDICT_KEYS = { a: "accepted", r: "rejected", g: "gold" };

function reviewRows() {
  return Array.from(document.querySelectorAll("tr.review-row"));
}

function currentRow() {
  return document.querySelector("tr.review-row.current");
}

function select(row) {
  for (const other of reviewRows()) {
    other.classList.remove("current");
  }
  row.classList.add("current");
  row.focus();
}

function onReviewKey(event) {
  const typing = event.target.closest("input, textarea, select");
  if (typing) {
    if (event.key === "Escape") {
      event.target.blur();
      const row = event.target.closest("tr.review-row");
      if (row) {
        select(row);
      }
    }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  }
  const rows = reviewRows();
  if (rows.length === 0) {
    return;
  }
  const row = currentRow();
  const at = row ? rows.indexOf(row) : -1;
  if (event.key === "j" || event.key === "k") {
    const next = event.key === "j" ? Math.min(at + 1, rows.length - 1) : Math.max(at - 1, 0);
    select(rows[next]);
    event.preventDefault();
  } else if (event.key === "e" && row) {
    row.querySelector('textarea[name="corrected"]').focus();
    event.preventDefault();
  } else if (VERDICT_KEYS[event.key] && row) {
    const button = row.querySelector(`button[name="verdict"][value="${VERDICT_KEYS[event.key]}"]`);
    row.querySelector("form.review").requestSubmit(button);
    event.preventDefault();
  }
}

function selectFromAddress() {
  const row = window.location.hash ? document.querySelector(window.location.hash) : null;
  if (row && row.classList.contains("review-row")) {
    select(row);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  window.setTimeout(poll, POLL_MS);
  document.addEventListener("keydown", onReviewKey);
  selectFromAddress();
});
