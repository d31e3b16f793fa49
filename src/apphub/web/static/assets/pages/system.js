// System settings: system.ini, read-only over the API (an operator changes it by file or CLI).
import { get } from "../api.js";
import { h, replace, short } from "../dom.js";
import { table } from "../table.js";

export async function render(view) {
  const system = await get("/api/v1/system");
  const schema = (await get("/api/v1/schema")).files["system.ini"];
  replace(view, h("h1", {}, "System settings"),
    h("p", { class: "muted" }, "system.ini at version ", h("code", {}, short(system.version)),
      ". Read-only here: change it in the file or with apphub setsysconfig."),
    Object.entries(system.settings).map(([section, values]) => h("section", {},
      h("h2", {}, `[${section}]`),
      table([["Key", (k) => h("code", {}, k)], ["Value", (k) => String(values[k] ?? "")],
        ["Description", (k) => schema.sections[section]?.keys[k]?.description || ""]], Object.keys(values)))));
}
