// The audit log: who did what, through what, to which file and keys (secrets masked), newest first.
import { get } from "../api.js";
import { h, replace, routeWith, short, when } from "../dom.js";
import { table } from "../table.js";

export async function render(view, { query }) {
  const parameters = new URLSearchParams({ limit: "100" });
  for (const name of ["actor", "action"]) if (query[name]) parameters.set(name, query[name]);
  const audit = await get(`/api/v1/audit?${parameters}`);
  const form = h("form", { class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    location.hash = routeWith("/audit", Object.fromEntries(new FormData(event.target)));
  } },
  h("label", { class: "filter" }, "Actor", h("input", { name: "actor", value: query.actor || "" })),
  h("label", { class: "filter" }, "Action", h("input", { name: "action", value: query.action || "", placeholder: "settings.update" })),
  h("button", { type: "submit" }, "Filter"));
  replace(view, h("h1", {}, "Audit log"), form,
    table([["When", (e) => when(e.at)], ["Who", (e) => e.actor], ["Through", (e) => e.source], ["Action", (e) => e.action],
      ["File", (e) => e.file || ""], ["Version", (e) => h("code", {}, short(e.version_after || e.version_before))],
      ["Changes", (e) => e.changes.map((c) => `${c.section}${c.key ? `.${c.key}` : ""} ${c.change}`).join(", ")],
      ["Message", (e) => e.message || ""]], audit.entries, { empty: "No event matches." }));
}
