// A plain table of rows, the shape every listing page uses.
import { h } from "./dom.js";

export function table(columns, rows, { empty = "Nothing yet.", label = "" } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "scroll" }, h("table", { class: "listing", "aria-label": label || null },
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))))));
}
