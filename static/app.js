// Progressive enhancement of the registration page: submit without a reload, show the server
// time (Server-Timing) and the browser's round trip as bars on one scale, show field errors next
// to their field, and follow the async job and the queue over Server-Sent Events.
// Without JavaScript the forms post normally and the server answers with a result page.
"use strict";

(function () {
  const timings = {}; // mode -> { server, rtt } in ms

  function serverTime(response) {
    const header = response.headers.get("server-timing") || "";
    const match = /app;dur=([0-9.]+)/.exec(header);
    return match ? parseFloat(match[1]) : null;
  }

  function format(ms) {
    return ms >= 100 ? ms.toFixed(0) + " ms" : ms.toFixed(1) + " ms";
  }

  function redrawBars() {
    let max = 1;
    for (const t of Object.values(timings)) max = Math.max(max, t.server || 0, t.rtt || 0);
    for (const [mode, t] of Object.entries(timings)) {
      const result = document.querySelector(`[data-result="${mode}"]`);
      for (const kind of ["server", "rtt"]) {
        const value = t[kind];
        const bar = result.querySelector(`[data-bar="${kind}"]`);
        const text = result.querySelector(`[data-value="${kind}"]`);
        bar.style.width = value == null ? "0" : Math.max(0.5, (value / max) * 100) + "%";
        text.textContent = value == null ? "n/a" : format(value);
      }
    }
  }

  function clearErrors(form) {
    for (const p of form.querySelectorAll(".field-error")) {
      p.hidden = true;
      p.textContent = "";
    }
    for (const input of form.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  }

  function showFieldError(form, mode, field, message) {
    const p = document.getElementById(`${mode}-${field}-error`);
    const input = document.getElementById(`${mode}-${field}`);
    if (!p || !input) return false;
    p.textContent = message;
    p.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return true;
  }

  function inboxLink(result, email) {
    const link = result.querySelector("[data-inbox-link]");
    const base = link.getAttribute("href").split("?")[0];
    if (base.startsWith("/dev/mailbox")) link.href = base + "?to=" + encodeURIComponent(email);
    result.querySelector("[data-inbox]").hidden = false;
  }

  function followJob(result, jobId, email) {
    const box = result.querySelector("[data-job]");
    const status = result.querySelector("[data-job-status]");
    const detail = result.querySelector("[data-job-detail]");
    box.hidden = false;
    result.querySelector("[data-job-id]").textContent = jobId;
    status.textContent = "pending";
    status.dataset.status = "pending";
    const events = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
    events.addEventListener("status", (event) => {
      const job = JSON.parse(event.data);
      status.textContent = job.status;
      status.dataset.status = job.status;
      if (job.status === "retrying" || job.status === "failed") {
        detail.textContent = `attempt ${job.attempts}` + (job.last_error ? `: ${job.last_error}` : "");
      } else {
        detail.textContent = job.attempts > 1 ? `after ${job.attempts} attempts` : "";
      }
      if (job.status === "done") inboxLink(result, email);
      if (job.status === "done" || job.status === "failed") events.close();
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) detail.textContent = "(live status lost; reload to see it)";
    };
  }

  async function submit(form, event) {
    event.preventDefault();
    const mode = form.dataset.mode;
    const result = document.querySelector(`[data-result="${mode}"]`);
    const outcome = result.querySelector("[data-outcome]");
    const button = form.querySelector("button");
    clearErrors(form);
    button.disabled = true;
    const email = form.elements.email.value.trim();
    const started = performance.now();
    let response, body;
    try {
      response = await fetch(form.action, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
        body: new URLSearchParams(new FormData(form)),
      });
      body = await response.json().catch(() => ({}));
    } catch (e) {
      outcome.textContent = "The server did not answer: " + e.message;
      outcome.className = "outcome error";
      result.hidden = false;
      button.disabled = false;
      return;
    }
    const rtt = performance.now() - started;
    button.disabled = false;
    timings[mode] = { server: serverTime(response), rtt };
    result.hidden = false;
    result.querySelector("[data-inbox]").hidden = true;
    const job = result.querySelector("[data-job]");
    if (job) job.hidden = true;
    const error = body.error || {};
    if (response.status === 201) {
      outcome.className = "outcome ok";
      outcome.textContent = mode === "sync"
        ? `Created user #${body.user_id}; the mail server accepted the welcome mail before this answer.`
        : `Created user #${body.user_id}; the welcome mail is queued.`;
      if (mode === "sync") inboxLink(result, email);
      if (body.job_id) followJob(result, body.job_id, email);
    } else if (response.status === 409) {
      outcome.className = "outcome warn";
      outcome.textContent = "Already registered: " + error.message;
      showFieldError(form, mode, "email", error.message);
    } else if (response.status === 502) {
      outcome.className = "outcome error";
      outcome.textContent = "Mail server failed: " + error.message;
    } else if (response.status === 422 && error.field) {
      outcome.className = "outcome error";
      outcome.textContent = "Please correct the highlighted field.";
      showFieldError(form, mode, error.field, `${error.field} ${error.message}`);
    } else {
      outcome.className = "outcome error";
      outcome.textContent = `${response.status}: ${error.message || "unexpected answer"}`;
    }
    redrawBars();
  }

  for (const form of document.querySelectorAll("form[data-mode]")) {
    form.addEventListener("submit", (event) => submit(form, event));
  }

  const queue = document.querySelector("[data-queue]");
  if (queue && window.EventSource) {
    const events = new EventSource("/api/queue/events");
    events.addEventListener("queue", (event) => {
      const q = JSON.parse(event.data);
      for (const key of ["pending", "running", "retrying", "done", "failed"]) {
        queue.querySelector(`[data-queue-${key}]`).textContent = q[key];
      }
      const mail = queue.querySelector("[data-queue-mail]");
      mail.textContent = q.mail_server;
      mail.className = q.mail_server === "up" ? "up" : "down";
    });
  }
})();
