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

document.addEventListener("DOMContentLoaded", () => window.setTimeout(poll, POLL_MS));
