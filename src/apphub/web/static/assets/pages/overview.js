// Overview: every service with its state, health, last change and how long it took, what needs
// attention first; live while a change is applied (server-sent events from the sync engine).
import { get, streamUrl } from "../api.js";
import { badge, h, ms, replace, short, when } from "../dom.js";

const STAGES = ["detect", "render", "validate", "write", "reload", "healthy", "total"];
const HEALTH_EVERY_MS = 15000;

function attention(status, health, history) {
  const items = [];
  const engine = status.engine;
  if (engine.config_error) items.push(["error", `config.ini is refused: ${engine.config_error}`, "#/settings"]);
  if (engine.manifest_error) items.push(["error", `services.yaml is refused: ${engine.manifest_error}`, null]);
  for (const refused of engine.refused || []) items.push(["error", `The last version was refused: ${refused}`, "#/history"]);
  for (const service of status.services) {
    const link = `#/history?service=${encodeURIComponent(service.service)}`;
    if (service.state === "failed") items.push(["error", `${service.service}: ${service.last_error || "failed"}`, link]);
    else if (service.state === "interrupted") items.push(["warning", `${service.service}: interrupted; it is reloaded at the next start`, null]);
    else if (service.state === "drifted") items.push(["warning", `${service.service}: edited outside apphub (${service.drift.join(", ")})`, null]);
    if (service.pending) items.push(["info", `${service.service}: ${service.pending}`, null]);
  }
  for (const service of health) {
    if (service.health === "down" && service.kind !== "engine") items.push(["error", `${service.name} is down: ${service.reason || "no answer"}`, null]);
  }
  const push = history && history.push;
  if (push && push.state === "failing") items.push(["warning", `The history is not pushed: ${push.last_error || "the remote refuses it"}`, null]);
  return items;
}

function serviceRow(service, healthOf) {
  const health = healthOf.get(service.service);
  const timings = service.timings_ms || {};
  return h("tr", { "data-service": service.service, "data-state": service.state },
    h("th", { scope: "row" }, service.service),
    h("td", {}, badge(service.state), service.last_error ? h("div", { class: "small error" }, service.last_error) : null,
      service.pending ? h("div", { class: "small muted" }, service.pending) : null),
    h("td", {}, health ? badge(health.health) : badge("unknown", "—"),
      health && health.reason ? h("div", { class: "small muted" }, health.reason) : null),
    h("td", {}, h("code", { title: service.applied_version || "" }, short(service.applied_version)),
      service.wanted_version && service.wanted_version !== service.applied_version
        ? h("div", { class: "small" }, "wants ", h("code", {}, short(service.wanted_version))) : null),
    h("td", {}, service.updated_at ? [service.last_action || "—", h("div", { class: "small muted" }, when(service.updated_at))]
      : h("span", { class: "muted small" }, "none since apphub started")),
    h("td", {}, h("div", { class: "timings" }, STAGES.filter((stage) => stage in timings).map((stage) =>
      h("span", { class: stage === "total" ? "stage total" : "stage", title: stage }, `${stage} ${ms(timings[stage])}`)))));
}

export async function render(view) {
  const live = h("span", { class: "live", "data-live": "connecting" }, "connecting…");
  const engineLine = h("p", { class: "muted" });
  const alerts = h("section", { "aria-labelledby": "attention" });
  const body = h("tbody");
  replace(view,
    h("div", { class: "title" }, h("h1", {}, "Overview"), live),
    engineLine, alerts,
    h("section", { "aria-labelledby": "services" },
      h("h2", { id: "services" }, "Services"),
      h("div", { class: "scroll" }, h("table", { class: "services" },
        h("thead", {}, h("tr", {}, ["Service", "State", "Health", "Version", "Last change", "Time taken"].map((t) =>
          h("th", { scope: "col" }, t)))), body))));

  let status = await get("/api/v1/sync/status");
  let health = [];
  const history = status.history;

  function draw() {
    const healthOf = new Map(health.map((item) => [item.name, item]));
    const engine = status.engine;
    replace(engineLine, "config.ini at ", h("code", { title: engine.config_version || "" }, short(engine.config_version)),
      ", applied ", h("code", { title: engine.applied_version || "" }, short(engine.applied_version)),
      ", last sync ", when(engine.last_sync_at), `, ${engine.syncs} syncs since start.`);
    const items = attention(status, health, history);
    replace(alerts, h("h2", { id: "attention" }, "Needs attention"),
      items.length ? h("ul", { class: "alerts" }, items.map(([kind, text, link]) =>
        h("li", { class: `alert alert-${kind}` }, link ? h("a", { href: link }, text) : text)))
        : h("p", { class: "ok" }, "Nothing: every service runs the version it should."));
    const order = { failed: 0, interrupted: 1, drifted: 2, applying: 3 };
    const services = [...status.services].sort((a, b) =>
      (order[a.state] ?? 9) - (order[b.state] ?? 9) || a.service.localeCompare(b.service));
    replace(body, services.map((service) => serviceRow(service, healthOf)));
  }

  async function refreshHealth() {
    try { health = (await get("/api/v1/services")).services; draw(); } catch { /* the next round tries again */ }
  }

  draw();
  refreshHealth();
  const timer = setInterval(refreshHealth, HEALTH_EVERY_MS);
  const events = new EventSource(streamUrl("/api/v1/sync/events"));
  events.addEventListener("status", (event) => {
    status = { ...JSON.parse(event.data), history };
    live.dataset.live = "on";
    live.textContent = "live";
    draw();
  });
  events.onerror = () => { live.dataset.live = "off"; live.textContent = "reconnecting…"; };
  return () => { events.close(); clearInterval(timer); };
}
