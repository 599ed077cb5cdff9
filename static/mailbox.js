// The development inbox, live: new mails arrive over Server-Sent Events (/dev/mailbox/events)
// and are added at the top without a reload, built with DOM calls (never as HTML). The HTML part
// of a mail is shown in a sandboxed iframe served with its own strict CSP.
"use strict";

(function () {
  const list = document.querySelector("[data-mails]");
  if (!list || !window.EventSource) return;
  const filter = (list.dataset.filter || "").toLowerCase();
  const count = document.querySelector("[data-count]");
  const live = document.querySelector("[data-live]");
  const announce = document.querySelector("[data-announce]");
  const empty = document.querySelector("[data-empty]");

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) node.append(child);
    return node;
  }

  function render(mail) {
    const article = el("article", { class: "card mail new", id: "mail-" + mail.id, "aria-labelledby": "subject-" + mail.id });
    article.append(el("h2", { id: "subject-" + mail.id }, mail.subject));
    article.append(el("p", { class: "meta" }, `From ${mail.from} to ${mail.to.join(", ")} · ${mail.received_at}`));
    const parts = el("div", { class: "parts" });
    parts.append(el("section", {}, el("h3", {}, "Text"), el("pre", {}, mail.text)));
    if (mail.html_url) {
      parts.append(el("section", {}, el("h3", {}, "HTML"),
        el("iframe", { sandbox: "", src: mail.html_url, title: `HTML part of “${mail.subject}”` })));
    }
    article.append(parts);
    const table = el("table", { class: "headers" });
    for (const [name, value] of mail.headers) table.append(el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value)));
    article.append(el("details", {}, el("summary", {}, "Headers"), table));
    return article;
  }

  const events = new EventSource("/dev/mailbox/events");
  events.addEventListener("ready", () => {
    live.textContent = "Live: new mail appears here by itself.";
  });
  events.addEventListener("mail", (event) => {
    const mail = JSON.parse(event.data);
    if (filter && !mail.to.some((to) => to.toLowerCase().includes(filter))) return;
    if (document.getElementById("mail-" + mail.id)) return;
    list.prepend(render(mail));
    count.textContent = String(list.children.length);
    empty.hidden = true;
    announce.textContent = `New mail: ${mail.subject} to ${mail.to.join(", ")}`;
  });
  events.addEventListener("lagged", () => window.location.reload());
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) live.textContent = "Live updates stopped; reload to see new mail.";
  };
})();
