// The dashboard: polls /ui/state.json every second and draws it. Data is only ever set as
// text (addresses and subjects come from senders), never as HTML.
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function num(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits ?? 0 });
}

function pct(rate) {
  return rate === null || rate === undefined ? "–" : (100 * rate).toFixed(2) + " %";
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = document.querySelectorAll(`#${tableId} thead th`).length;
    const td = el("td", "none", "muted");
    td.colSpan = cols;
    const tr = el("tr");
    tr.append(td);
    body.append(tr);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function notify(text, bad) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.className = bad ? "bad" : "good";
}

async function act(url, body, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  const resp = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-Dispatcher-Action": "1", "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const answer = await resp.json().catch(() => ({ error: resp.statusText }));
  if (resp.ok) {
    notify(answer.message, false);
  } else if (answer.field === "force" && window.confirm(answer.error + "\n\nResume anyway?")) {
    return act(url, { force: true });
  } else {
    notify(answer.error || resp.statusText, true);
  }
  poll();
}

function button(label, url, confirmText, cls) {
  const b = el("button", label, cls);
  b.type = "button";
  b.dataset.action = label;
  b.addEventListener("click", () => act(url, {}, confirmText));
  return b;
}

function drawChart(rate) {
  const svg = document.getElementById("chart");
  // Drawn in the element's own pixels, so the labels are not stretched.
  const width = Math.max(200, svg.clientWidth), height = 160;
  const top = rate.y_max || 1, span = rate.window_seconds;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const x = (t) => (width * (t + span)) / span;
  const y = (v) => height - 4 - ((height - 14) * v) / top;
  const parts = [];
  for (const frac of [0, 0.5, 1]) {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", "0");
    line.setAttribute("x2", String(width));
    line.setAttribute("y1", String(y(top * frac)));
    line.setAttribute("y2", String(y(top * frac)));
    line.setAttribute("class", "grid");
    parts.push(line);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", "2");
    label.setAttribute("y", String(Math.max(10, y(top * frac) - 2)));
    label.textContent = num(top * frac, 2);
    parts.push(label);
  }
  for (const [index, cls] of [[2, "allowed"], [1, "achieved"]]) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", rate.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[index]).toFixed(1)}`).join(" "));
    line.setAttribute("class", cls);
    parts.push(line);
  }
  svg.replaceChildren(...parts);
}

function drawQuota(quota) {
  const box = document.getElementById("quota");
  if (!quota) {
    box.replaceChildren(el("p", "no GetSendQuota reading yet", "muted"));
    return;
  }
  if (quota.max_24h === null) {
    box.replaceChildren(el("p", `${num(quota.used_24h)} sent in 24 h; no daily limit`));
    return;
  }
  const bar = el("div", null, "bar");
  const used = el("div", null, quota.used_24h >= quota.stop_at ? "used full" : "used");
  used.style.width = Math.min(100, quota.pct || 0) + "%";
  bar.append(used);
  box.replaceChildren(
    el("p", `${num(quota.used_24h)} of ${num(quota.max_24h)} used (${num(quota.pct, 1)} %)`, "quota-used"),
    bar,
    el("p", `headroom: ${num(quota.left)} before the governor stops at ${num(quota.stop_at)}`, "quota-left"),
    el("p", `MaxSendRate ${num(quota.max_send_rate, 2)}/s · reading ${num(quota.reading_age_seconds, 1)} s old`, "muted"),
  );
}

function progress(c) {
  const td = el("td");
  const bar = el("div", null, "bar");
  const done = el("div", null, "used");
  done.style.width = (c.pct || 0) + "%";
  bar.append(done);
  td.append(bar, el("small", `${num(c.done)} / ${num(c.recipients)} (${num(c.pct, 1)} %)`));
  return td;
}

// Provider lanes ([[providers]]): hidden when none is configured (state.json has none).
function drawLanes(lanes) {
  const card = document.getElementById("lanes-card");
  card.hidden = !(lanes && lanes.length);
  if (card.hidden) return;
  fill("lanes", lanes.map((l) => {
    const cap = l.daily_cap === null ? "no cap" : `${num(l.daily_cap)} (${num(l.cap_left)} left)`;
    const back = l.backed_off ? el("td", l.backed_off, "bad") : el("td", "no", "muted");
    const tr = row([
      l.provider,
      l.rate === null ? "account rate" : `${num(l.rate, 2)}/s`,
      cap,
      num(l.sent_today),
      back,
    ]);
    tr.dataset.provider = l.provider;
    return tr;
  }));
}

// Several SES accounts ([[accounts]]): hidden with one (the rest of the page is that one).
function drawAccounts(accounts) {
  const card = document.getElementById("accounts-card");
  card.hidden = !(accounts && accounts.length);
  if (card.hidden) return;
  fill("accounts", accounts.map((a) => {
    let quota = "quota not read yet";
    if (a.max_send_rate !== null) {
      const max = a.unlimited ? "unlimited" : num(a.max_24_hour_send);
      quota = `${num(a.sent_last_24_hours)} of ${max}`;
    }
    const problems = [];
    if (a.paused) problems.push(`PAUSED: ${a.paused}`);
    if (a.held) problems.push(`HELD: ${a.held}`);
    const state = problems.length ? el("td", problems.join("; "), "bad") : el("td", "sending", "good");
    const tr = row([
      a.name + (a.default ? " (default)" : ""),
      a.region || "–",
      a.max_send_rate === null ? "–" : `${num(a.max_send_rate, 2)}/s`,
      quota,
      num(a.queued),
      state,
    ]);
    tr.dataset.account = a.name;
    return tr;
  }));
}

function draw(s) {
  document.getElementById("updated").textContent =
    "updated " + new Date(s.at).toLocaleTimeString() + (s.database_up ? "" : " · Postgres not answering");
  document.getElementById("rate-achieved").textContent = num(s.rate.achieved, 2);
  document.getElementById("rate-allowed").textContent = num(s.rate.allowed, 2);
  document.getElementById("in-flight").textContent = num(s.in_flight);
  document.getElementById("sent-total").textContent = num(s.sends.sent);
  document.getElementById("window").textContent = num(s.rate.window_seconds / 60);
  drawChart(s.rate);
  const t = s.errors.since_start;
  document.getElementById("transient").textContent = t.throttled === undefined ? "" :
    `since this daemon started: ${num(t.throttled)} throttled, ${num(t.retried)} retried, ${num(t.in_doubt)} in doubt`;
  fill("errors", s.errors.failed.map((e) => row([e.kind, num(e.count), new Date(e.last_at).toLocaleTimeString(), e.example || ""])));
  if (!s.database_up) return;

  const banner = document.getElementById("banner");
  banner.hidden = !s.sending_held;
  banner.textContent = s.sending_held ? `ALL SENDING HELD: ${s.sending_held.reason} (dispatcher resume --force)` : "";
  drawQuota(s.quota);
  fill("queue", s.queue.map((q) => row([q.state, num(q.total), num(q.message), num(q.campaign)])));
  drawAccounts(s.accounts);
  drawLanes(s.lanes);
  fill("campaigns", s.campaigns.map((c) => {
    const actions = el("td");
    for (const a of c.actions) {
      const ask = a === "cancel" ? `Cancel campaign ${c.label}? Unsent mail will not be sent.` : null;
      actions.append(button(a, `/ui/api/campaigns/${c.id}/${a}`, ask, a));
    }
    const tr = row([
      c.label,
      c.state + (c.pause_reason ? ` (${c.pause_reason})` : ""),
      progress(c),
      el("td", num(c.sent), "sent"),
      c.guard ? `${pct(c.guard.bounce_rate)} / ${pct(c.guard.complaint_rate)}` : "–",
      actions,
    ]);
    tr.dataset.campaign = String(c.id);
    return tr;
  }));
  const g = s.guard;
  document.getElementById("guard-window").textContent = `(last ${num(g.window_hours)} h, ${num(g.recipients_sent)} sent)`;
  fill("guard", [
    row(["bounce", pct(g.bounce_rate), pct(g.guard_bounce_threshold), pct(g.aws_bounce_review)]),
    row(["complaint", pct(g.complaint_rate), pct(g.guard_complaint_threshold), pct(g.aws_complaint_review)]),
  ]);
  fill("held", s.held_senders.map((h) => row([
    h.from + (h.configuration_set ? ` (${h.configuration_set})` : ""), h.reason, `${num(h.retry_in_seconds)} s`,
  ])));
  document.getElementById("in-doubt-total").textContent = `(${num(s.in_doubt_total)})`;
  fill("in-doubt", s.in_doubt.map((m) => {
    const actions = el("td");
    actions.append(
      button("resend", `/ui/api/in-doubt/${m.id}/resend`, `Send message ${m.id} again? It may have been sent already.`),
      button("sent", `/ui/api/in-doubt/${m.id}/sent`, null),
      button("failed", `/ui/api/in-doubt/${m.id}/failed`, null),
    );
    return row([String(m.id), new Date(m.since).toLocaleString(), `${m.from} → ${m.to.join(", ")}`, m.subject, m.error || "", actions]);
  }));
}

let timer = null;
async function poll() {
  clearTimeout(timer);
  try {
    const resp = await fetch("/ui/state.json", { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) throw new Error(`state.json answered ${resp.status}`);
    draw(await resp.json());
  } catch (err) {
    document.getElementById("updated").textContent = "not updating: " + err.message;
  }
  timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", poll);
