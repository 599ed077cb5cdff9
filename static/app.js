// Progressive enhancement of the registration page: submit without a reload, show the server
// time (Server-Timing, stacked by phase) and the browser's round trip as bars on one scale, show
// field errors next to their field, follow every job of the async registration and the queue over
// Server-Sent Events, and drive the development mail server.
// Without JavaScript the forms post normally and the server answers with a result page.
"use strict";

(function () {
  const timings = {}; // mode -> { server, rtt, phases: [[name, ms]] }
  const following = {}; // mode -> open EventSources
  const MAIL_QUEUES = ["welcome_email", "signup_coupon"];
  const KNOWN_PHASES = ["hash", "db", "welcome_email", "audit_log", "signup_coupon"];

  // `hash;dur=12.1, db;dur=0.8, welcome_email;dur=1500.2, app;dur=1514` -> total and phases.
  function serverTiming(response) {
    const header = response.headers.get("server-timing") || "";
    let total = null;
    const phases = [];
    for (const entry of header.split(",")) {
      const match = /^\s*([A-Za-z0-9_-]+).*;\s*dur=([0-9.]+)/.exec(entry);
      if (!match) continue;
      const value = parseFloat(match[2]);
      if (match[1] === "app") total = value;
      else phases.push([match[1], value]);
    }
    return { total, phases };
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
      drawPhases(result, t);
    }
  }

  // The server bar as one segment per phase, and a legend with each phase's time.
  function drawPhases(result, t) {
    const stack = result.querySelector('[data-bar="server"]');
    const legend = result.querySelector("[data-phases]");
    stack.replaceChildren();
    legend.replaceChildren();
    if (!t.server || !t.phases.length) return;
    let rest = t.server;
    const parts = t.phases.map(([name, ms]) => { rest -= ms; return [name, ms]; });
    if (rest > 0.05) parts.push(["other", rest]);
    for (const [name, ms] of parts) {
      const kind = KNOWN_PHASES.includes(name) ? name : "other";
      const segment = document.createElement("span");
      segment.className = "ph-" + kind;
      segment.style.width = (ms / t.server) * 100 + "%";
      segment.title = `${name}: ${format(ms)}`;
      stack.append(segment);
      const item = document.createElement("span");
      item.dataset.phase = name;
      const swatch = document.createElement("i");
      swatch.className = "ph-" + kind;
      swatch.setAttribute("aria-hidden", "true");
      item.append(swatch, `${name} ${format(ms)}`);
      legend.append(item);
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

  function stopFollowing(mode) {
    for (const events of following[mode] || []) events.close();
    following[mode] = [];
  }

  // One line per consumer's job, each with its own live status; mail jobs link to their mail.
  function followJobs(result, jobs, email, mode) {
    const box = result.querySelector("[data-job]");
    const list = result.querySelector("[data-jobs]");
    list.replaceChildren();
    box.hidden = false;
    const queues = Object.keys(jobs).sort((a, b) => (a === "welcome_email" ? -1 : b === "welcome_email" ? 1 : a.localeCompare(b)));
    for (const queue of queues) {
      const jobId = jobs[queue];
      const item = document.createElement("li");
      item.dataset.queue = queue;
      const name = document.createElement("code");
      name.textContent = queue;
      name.title = "job " + jobId;
      const status = document.createElement("strong");
      status.className = "status";
      status.dataset.jobStatus = queue;
      status.dataset.status = "pending";
      status.textContent = "pending";
      const detail = document.createElement("span");
      detail.className = "muted";
      item.append(name, ": ", status, " ", detail);
      list.append(item);
      const events = new EventSource(`/api/jobs/${encodeURIComponent(jobId)}/events`);
      following[mode].push(events);
      events.addEventListener("status", (event) => {
        const job = JSON.parse(event.data);
        status.textContent = job.status;
        status.dataset.status = job.status;
        if (job.status === "retrying" || job.status === "failed") {
          detail.textContent = `attempt ${job.attempts}` + (job.last_error ? `: ${job.last_error}` : "");
        } else {
          detail.textContent = job.attempts > 1 ? `after ${job.attempts} attempts` : "";
        }
        if (job.status === "done") {
          if (queue === "welcome_email") inboxLink(result, email);
          if (MAIL_QUEUES.includes(queue)) {
            const link = document.createElement("a");
            link.href = mailLink(result, email);
            link.textContent = "its mail";
            detail.replaceChildren(link);
          }
        }
        if (job.status === "done" || job.status === "failed") events.close();
      });
      events.onerror = () => {
        if (events.readyState === EventSource.CLOSED && status.dataset.status !== "done") detail.textContent = "(live status lost; reload to see it)";
      };
    }
  }

  function mailLink(result, email) {
    const base = result.querySelector("[data-inbox-link]").getAttribute("href").split("?")[0];
    return base.startsWith("/dev/mailbox") ? base + "?to=" + encodeURIComponent(email) : base;
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
    const timing = serverTiming(response);
    timings[mode] = { server: timing.total, rtt, phases: timing.phases };
    stopFollowing(mode);
    result.hidden = false;
    result.querySelector("[data-inbox]").hidden = true;
    const job = result.querySelector("[data-job]");
    if (job) job.hidden = true;
    const error = body.error || {};
    if (response.status === 201) {
      outcome.className = "outcome ok";
      outcome.textContent = mode === "sync"
        ? `Created user #${body.user_id}; every consumer ran inside this request: the mail server accepted the welcome and coupon mails before this answer.`
        : `Created user #${body.user_id}; ${Object.keys(body.jobs || {}).length} jobs are queued, one per consumer.`;
      if (mode === "sync") inboxLink(result, email);
      if (body.jobs && Object.keys(body.jobs).length) followJobs(result, body.jobs, email, mode);
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

  // The development mail server's switches (embedded inbox only).
  const mailServer = document.querySelector("form[data-mail-server]");
  function showMailServer(state) {
    const text = `${state.down ? "down" : "up"}, ${state.latency_ms} ms per mail` + (state.flaky_share > 0 ? `, ${state.flaky_share} flaky` : "");
    document.querySelector("[data-mail-state]").textContent = text;
  }
  if (mailServer) {
    mailServer.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = document.getElementById("mail-server-error");
      error.hidden = true;
      const f = mailServer.elements;
      const change = {
        latency_ms: Math.max(0, Math.round(Number(f.latency_ms.value) || 0)),
        flaky_share: Number(f.flaky_share.value) || 0,
        down: f.down.checked,
      };
      try {
        const response = await fetch(mailServer.action, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify(change),
        });
        const body = await response.json().catch(() => ({}));
        if (!response.ok) {
          error.textContent = (body.error && body.error.message) ? `${body.error.field || ""} ${body.error.message}` : `error ${response.status}`;
          error.hidden = false;
          return;
        }
        showMailServer(body);
      } catch (e) {
        error.textContent = "The server did not answer: " + e.message;
        error.hidden = false;
      }
    });
  }

  // Decoupled: switch one consumer to fail (development only).
  for (const form of document.querySelectorAll("form[data-consumer-switch]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const queue = form.elements.queue.value;
      const fail = form.elements.fail.value === "on";
      const response = await fetch(form.action, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ queue, fail }),
      }).catch(() => null);
      if (!response || !response.ok) return;
      const state = form.querySelector("[data-consumer-state]");
      const button = form.querySelector("button");
      state.textContent = fail ? "failing" : "working";
      state.className = fail ? "down" : "up";
      button.firstChild.textContent = fail ? "Let it work" : "Make it fail";
      button.classList.toggle("failing", fail);
      form.elements.fail.value = fail ? "off" : "on";
    });
  }

  // Peak shaving: send a burst, and chart the queue depth and the mails per second.
  const burst = document.querySelector("form[data-burst]");
  if (burst) {
    burst.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = document.querySelector("[data-burst-result]");
      const button = burst.querySelector("button");
      const count = Math.round(Number(burst.elements.count.value) || 0);
      const mode = burst.elements.mode.value;
      button.disabled = true;
      result.textContent = `Sending ${count} registrations ${mode === "sync" ? "inline" : "through the queue"}…`;
      try {
        const response = await fetch(burst.action, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify({ count, mode }),
        });
        const body = await response.json().catch(() => ({}));
        result.textContent = response.ok
          ? `${body.created} of ${body.count} registered ${mode === "sync" ? "inline" : "through the queue"} in ${format(body.took_ms)} (slowest ${format(body.slowest_ms)})` + (body.failed ? `, ${body.failed} failed` : "") + "."
          : `Refused: ${(body.error && body.error.message) || response.status}`;
        result.dataset.done = "true";
      } catch (e) {
        result.textContent = "The server did not answer: " + e.message;
      }
      button.disabled = false;
    });
  }

  const chart = document.querySelector("svg[data-chart]");
  const samples = []; // [{ depth, rate }], one a second
  let latest = null;
  let lastDone = null;
  function drawChart() {
    const W = 600, H = 180, PAD = 22, N = 60;
    const ns = "http://www.w3.org/2000/svg";
    const max = Math.max(5, ...samples.map((s) => Math.max(s.depth, s.rate)));
    chart.replaceChildren();
    const axis = document.createElementNS(ns, "text");
    axis.setAttribute("x", "4");
    axis.setAttribute("y", "14");
    axis.setAttribute("font-size", "12");
    axis.setAttribute("fill", "#616e7c");
    axis.textContent = String(max);
    const base = document.createElementNS(ns, "line");
    for (const [k, v] of [["x1", PAD], ["x2", W], ["y1", H - 4], ["y2", H - 4], ["stroke", "#9aa5b1"]]) base.setAttribute(k, v);
    chart.append(axis, base);
    for (const [key, color] of [["depth", "#2f6fdb"], ["rate", "#e8590c"]]) {
      const points = samples.map((s, i) => {
        const x = PAD + ((W - PAD) * (N - samples.length + i)) / (N - 1);
        const y = H - 4 - ((H - 24) * s[key]) / max;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", color);
      line.setAttribute("stroke-width", "2.5");
      line.dataset.series = key;
      chart.append(line);
    }
    const now = samples[samples.length - 1];
    if (now) {
      const peak = Math.max(...samples.map((s) => s.depth));
      const text = document.querySelector("[data-chart-now]");
      text.textContent = `depth ${now.depth}, ${now.rate} mails/s (peak depth ${peak})`;
      text.dataset.depth = String(now.depth);
      text.dataset.peak = String(peak);
    }
  }
  if (chart) {
    setInterval(() => {
      if (!latest) return;
      const depth = latest.pending + latest.running + latest.retrying;
      const rate = lastDone == null ? 0 : Math.max(0, latest.done - lastDone);
      lastDone = latest.done;
      samples.push({ depth, rate });
      if (samples.length > 60) samples.shift();
      drawChart();
    }, 1000);
  }

  const queue = document.querySelector("[data-queue]");
  if (queue && window.EventSource) {
    const events = new EventSource("/api/queue/events");
    events.addEventListener("queue", (event) => {
      const q = JSON.parse(event.data);
      latest = q;
      for (const key of ["pending", "running", "retrying", "done", "failed"]) {
        queue.querySelector(`[data-queue-${key}]`).textContent = q[key];
      }
      const mail = queue.querySelector("[data-queue-mail]");
      mail.textContent = q.mail_server;
      mail.className = q.mail_server === "up" ? "up" : "down";
    });
  }
})();
