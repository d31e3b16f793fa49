// The keys a version changed, as a table: a secret shows as changed, never with a value.
import { h } from "./dom.js";

export function changesTable(changes, { caption = "" } = {}) {
  if (!changes.length) return h("p", { class: "muted" }, "No key differs.");
  return h("div", { class: "scroll" }, h("table", { class: "changes" },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, ["Section", "Key", "Change", "Before", "After"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, changes.map((change) => h("tr", { "data-key": `${change.section}.${change.key ?? ""}` },
      h("td", {}, change.section), h("td", {}, change.key ?? "(section)"), h("td", {}, change.change),
      h("td", { class: "value" }, change.secret ? h("em", {}, "secret") : change.old ?? ""),
      h("td", { class: "value" }, change.secret ? h("em", {}, change.change === "changed" ? "secret, changed" : "secret")
        : change.new ?? ""))))));
}
