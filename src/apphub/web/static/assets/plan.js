// What a change does to each service: its file diffs, environment changes and reload action; and
// the live progress of a version reaching the services, from the sync engine's event stream.
import { streamUrl } from "./api.js";
import { badge, h, replace, short } from "./dom.js";
import { switchableDiff } from "./diff.js";

const ACTION_TEXT = {
  none: "nothing to reload: it reads the file again itself",
};

// Said only of a hot change: "none" for keys that need a reload or a restart is no reason to say
// the service re-reads its file by itself.
function actionText(service) {
  const hot = !service.level || service.level === "hot";
  return (hot && ACTION_TEXT[service.action]) || `${service.action} (${service.level})`;
}

export function planView(plan, { title = "What it does to each service" } = {}) {
  if (!plan) return h("p", { class: "muted" }, "The sync engine does not run here: no plan.");
  const changed = plan.services.filter((service) => service.changed);
  const list = h("div", { class: "plan", "data-plan": plan.version },
    h("h3", {}, title),
    plan.refused ? h("div", { class: "alert alert-error" }, "apphub would refuse this version: ",
      plan.errors.join("; ")) : null,
    (plan.notes || []).map((note) => h("p", { class: "notice", "data-note": "true" }, note)),
    changed.length === 0 ? h("p", { class: "muted" }, "No service's files or environment change.") : null,
    changed.map((service) => h("details", { class: "service-plan", open: changed.length <= 3,
      "data-service": service.service },
    h("summary", {}, h("strong", {}, service.service), " — ",
      actionText(service),
      service.because.length ? h("span", { class: "muted small" }, ` because of ${service.because.join(", ")}`) : null),
    service.files.filter((file) => file.changed).map((file) => h("div", { class: "file" },
      h("div", { class: "path" }, file.path), switchableDiff(file.diff, file.path))),
    service.env ? envChanges(service.env) : null,
    service.pending ? h("p", { class: "muted small" }, service.pending) : null)),
    plan.services.length > changed.length ? h("p", { class: "muted small" },
      `Unchanged: ${plan.services.filter((s) => !s.changed).map((s) => s.service).join(", ")}.`) : null);
  return list;
}

function envChanges(env) {
  const changes = env.changes || [];
  if (!changes.length) return null;
  return h("div", { class: "file" }, h("div", { class: "path" }, `environment of container ${env.container}`),
    h("ul", {}, changes.map((change) => h("li", {}, typeof change === "string" ? change : JSON.stringify(change)))));
}

// Follows `services` until each holds `version` (applied) or failed it; calls `done` with the
// final states. Returns what stops following.
export function followVersion(version, services, holder, done) {
  const wanted = new Set(services);
  const events = new EventSource(streamUrl("/api/v1/sync/events"));
  const rows = new Map();
  const list = h("ul", { class: "progress", "data-version": version });
  replace(holder, h("p", {}, "Version ", h("code", {}, short(version)), " is reaching the services:"), list);
  for (const name of wanted) {
    const row = h("li", { "data-service": name, "data-state": "waiting" }, h("strong", {}, name), " ", badge("pending", "waiting"));
    rows.set(name, row);
    list.append(row);
  }
  let finished = wanted.size === 0;
  if (finished) { events.close(); done(new Map()); }
  events.addEventListener("status", (event) => {
    const status = JSON.parse(event.data);
    const states = new Map();
    for (const service of status.services) {
      if (!wanted.has(service.service)) continue;
      let state = service.state;
      if (service.wanted_version !== version && state !== "applying") state = "waiting";
      if (state === "applied" && service.applied_version !== version) state = "waiting";
      states.set(service.service, { state, error: service.last_error });
      const row = rows.get(service.service);
      row.dataset.state = state;
      replace(row, h("strong", {}, service.service), " ", state === "waiting" ? badge("pending", "waiting") : badge(state),
        state === "failed" && service.last_error ? h("div", { class: "small error" }, service.last_error) : null);
    }
    const settled = [...wanted].every((name) => ["applied", "failed", "interrupted"].includes(states.get(name)?.state));
    if (settled && !finished) { finished = true; events.close(); done(states); }
  });
  return () => events.close();
}
