// Settings: per section, a form the schema drives. Each edit is checked by the server's rules as
// it is typed (errors and warnings at the field); "Review" shows what each service would get and
// do; "Save" writes with If-Match, so a change someone else made meanwhile is never overwritten.
import { ApiError, call, can, get } from "../api.js";
import { badge, h, replace, short, toast } from "../dom.js";
import { followVersion, planView } from "../plan.js";

const CHECK_AFTER_MS = 350;
let schemaCache = null;

async function schema() {
  schemaCache = schemaCache || (await get("/api/v1/schema")).files["config.ini"];
  return schemaCache;
}

function inputFor(key, spec, value, editable, revealed) {
  const id = `field-${key}`;
  const common = { id, name: key, disabled: !editable, "aria-describedby": `${id}-help ${id}-message` };
  if (spec.type === "bool") {
    return h("input", { ...common, type: "checkbox", checked: value === true || value === "true" });
  }
  if (spec.type === "enum" && spec.choices) {
    return h("select", common, spec.choices.map((choice) => h("option", { value: choice, selected: String(value) === choice }, choice)));
  }
  if (spec.type === "list") {
    const text = Array.isArray(value) ? value.join("\n") : value ?? "";
    return h("textarea", { ...common, rows: Math.min(8, Math.max(2, text.split("\n").length + 1)), value: text });
  }
  if (spec.secret) {
    return h("input", { ...common, type: revealed ? "text" : "password", autocomplete: "new-password", spellcheck: "false",
      value: revealed ? value ?? "" : "", placeholder: value ? "******** (unchanged; type to replace)" : "(not set)" });
  }
  const numeric = spec.type === "int" || spec.type === "port";
  return h("input", { ...common, type: numeric ? "number" : spec.type === "email" ? "email" : spec.type === "url" ? "url" : "text",
    min: spec.min ?? (spec.type === "port" ? 1 : null), max: spec.max ?? (spec.type === "port" ? 65535 : null),
    minlength: spec.min_length, maxlength: spec.max_length, value: value ?? "", spellcheck: "false" });
}

function writeInput(input, spec, value) {
  if (spec.type === "bool") input.checked = value === true || value === "true";
  else if (spec.type === "list") input.value = Array.isArray(value) ? value.join("\n") : value ?? "";
  else input.value = value ?? "";
}

function readInput(input, spec) {
  if (spec.type === "bool") return input.checked;
  if (spec.type === "list") return input.value.split("\n").map((line) => line.trim()).filter(Boolean);
  if ((spec.type === "int" || spec.type === "port") && /^-?\d+$/.test(input.value.trim())) return Number(input.value.trim());
  return input.value;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

export async function render(view, { parts, query }) {
  const fileSchema = await schema();
  const current = await get("/api/v1/settings");
  const names = [...new Set([...Object.keys(fileSchema.sections), ...Object.keys(current.settings)])];
  const section = parts[0] ? decodeURIComponent(parts[0]) : names[0];
  const revealed = query.reveal === "1" && can("admin");
  const nav = h("nav", { class: "sections", "aria-label": "Sections" }, h("ul", {}, names.map((name) =>
    h("li", {}, h("a", { href: `#/settings/${encodeURIComponent(name)}`, "aria-current": name === section ? "page" : null }, name)))));
  const panel = h("div", { class: "section-panel" });
  replace(view, h("h1", {}, "Settings"), h("div", { class: "with-aside" }, nav, panel));
  if (!names.includes(section)) {
    replace(panel, h("p", { class: "error" }, `config.ini has no section [${section}].`));
    return undefined;
  }
  return drawSection(panel, section, fileSchema.sections[section] || { description: "", keys: {} }, revealed);
}

async function drawSection(panel, section, spec, revealed) {
  const path = `/api/v1/settings/${encodeURIComponent(section)}${revealed ? "?reveal=true" : ""}`;
  const answer = await call("GET", path);
  let version = answer.etag || answer.data.version;
  let stored = answer.data.settings;
  const editable = can("write");
  const keys = [...new Set([...Object.keys(spec.keys), ...Object.keys(stored)])];
  const fields = new Map();
  const form = h("form", { class: "settings-form", novalidate: true, "data-section": section });
  const status = h("div", { class: "form-status", role: "status", "aria-live": "polite" });
  const planArea = h("div", { class: "plan-area" });
  let stopFollowing = null;
  let timer = null;
  let checked = 0;
  const versionCode = h("code");
  function showVersion() {
    versionCode.dataset.version = version;
    versionCode.textContent = short(version);
  }
  showVersion();

  for (const key of keys) {
    const keySpec = spec.keys[key] || { type: "string", description: "(not in the schema)", apply: "restart" };
    const input = inputFor(key, keySpec, stored[key], editable && !(keySpec.secret && !editable), revealed);
    const message = h("div", { id: `field-${key}-message`, class: "message" });
    const description = keySpec.description ? keySpec.description.replace(/([^.!?])$/, "$1.") : "";
    const help = h("div", { id: `field-${key}-help`, class: "help muted small" },
      description, keySpec.default !== null && keySpec.default !== undefined && keySpec.default !== ""
        ? ` Default: ${Array.isArray(keySpec.default) ? keySpec.default.join(", ") : keySpec.default}.` : "",
      keySpec.choices && keySpec.type !== "enum" ? ` One of: ${keySpec.choices.join(", ")}.` : "");
    const field = h("div", { class: "field", "data-key": key },
      h("label", { for: `field-${key}` }, key, keySpec.required ? h("span", { class: "required", title: "required" }, " *") : null,
        " ", h("span", { class: `apply apply-${keySpec.apply}`, title: "what a change of it needs" }, keySpec.apply),
        keySpec.secret ? h("span", { class: "secret-tag" }, "secret") : null),
      input, help, message);
    fields.set(key, { input, spec: keySpec, message, field });
    form.append(field);
  }

  function proposal() {
    const changed = {};
    for (const [key, { input, spec: keySpec }] of fields) {
      if (keySpec.secret && !revealed && input.value === "") continue; // left alone: unchanged
      const value = readInput(input, keySpec);
      if (!same(value, keySpec.secret && !revealed ? null : stored[key])) changed[key] = value;
    }
    return changed;
  }

  function showFindings(errors, warnings) {
    for (const { message, field } of fields.values()) { replace(message); field.classList.remove("invalid", "warned"); }
    const elsewhere = [];
    for (const [list, kind] of [[errors, "error"], [warnings, "warning"]]) {
      for (const finding of list) {
        const target = finding.section === section ? fields.get(finding.key) : null;
        if (!target) { elsewhere.push([kind, finding]); continue; }
        target.field.classList.add(kind === "error" ? "invalid" : "warned");
        target.message.append(h("div", { class: kind }, finding.message, finding.rule ? h("span", { class: "muted small" }, ` (${finding.rule})`) : null));
      }
    }
    return elsewhere;
  }

  async function check() {
    const changed = proposal();
    const ticket = ++checked;
    const count = Object.keys(changed).length;
    replace(planArea);
    if (!count) { showFindings([], []); replace(status, "No change yet."); reviewButton.disabled = true; return; }
    const secret = Object.keys(changed).some((key) => fields.get(key).spec.secret);
    if (secret && !can("admin")) {
      showFindings([], []);
      replace(status, `${count} key(s) changed. A secret's value is checked when it is saved (checking it first needs an admin key).`);
      reviewButton.disabled = false;
      return;
    }
    try {
      const answer = (await call("POST", "/api/v1/settings/validate", { body: { [section]: changed } })).data;
      if (ticket !== checked) return;
      const elsewhere = showFindings(answer.errors, answer.warnings);
      replace(status, answer.valid ? `${count} key(s) changed; the rules find no error.` : "Fix the errors before saving.",
        elsewhere.length ? h("ul", {}, elsewhere.map(([kind, f]) => h("li", { class: kind }, `[${f.section}] ${f.key}: ${f.message}`))) : null);
      reviewButton.disabled = !answer.valid;
    } catch (error) {
      if (ticket === checked) replace(status, h("span", { class: "error" }, error.message));
    }
  }

  async function review() {
    const changed = proposal();
    replace(planArea, h("p", { class: "muted" }, "Planning…"));
    let plan = null;
    const secret = Object.keys(changed).some((key) => fields.get(key).spec.secret);
    try {
      if (!secret || can("admin")) plan = (await call("POST", "/api/v1/settings/plan", { body: { [section]: changed } })).data;
    } catch (error) {
      replace(planArea, h("p", { class: "error" }, error.message));
      return;
    }
    replace(planArea,
      plan ? planView(plan) : h("p", { class: "muted" }, "The plan of a change of a secret needs an admin key; saving shows what happened."),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", "data-action": "save", disabled: plan !== null && plan.refused,
          onclick: () => save(changed, plan) }, "Save"),
        h("button", { type: "button", onclick: () => replace(planArea) }, "Back to editing")));
    planArea.querySelector("[data-action=save]").focus();
  }

  async function save(changed, plan) {
    replace(planArea, h("p", { class: "muted" }, "Saving…"));
    try {
      const answer = await call("PUT", `/api/v1/settings/${encodeURIComponent(section)}`, { body: changed, ifMatch: version });
      version = answer.etag || answer.data.version;
      showVersion();
      // The answer masks the secrets: keeping those masks as the stored values would count a revealed
      // secret as changed at the next edit. What was saved is known: it is what was sent.
      for (const [key, value] of Object.entries(answer.data.settings?.[section] || {})) {
        if (!fields.get(key)?.spec.secret) stored[key] = value;
      }
      const changedServices = plan ? plan.services.filter((s) => s.changed).map((s) => s.service) : [];
      toast(`Saved: config.ini is at version ${short(version)}.`);
      for (const [key, { input, spec: keySpec }] of fields) {
        if (keySpec.secret && !revealed) input.value = "";
        else if (key in changed) stored[key] = changed[key];
      }
      replace(status, "Saved.");
      reviewButton.disabled = true;
      const progress = h("div", { class: "card" });
      replace(planArea, progress);
      if (stopFollowing) stopFollowing();
      stopFollowing = followVersion(version, changedServices, progress, (states) => {
        const failed = [...states].filter(([, s]) => s.state !== "applied");
        progress.append(h("p", { class: failed.length ? "error" : "ok", "data-outcome": failed.length ? "failed" : "applied" },
          failed.length ? `${failed.map(([n]) => n).join(", ")} did not take it: each runs its previous files again.`
            : changedServices.length ? "Every service took the change and is healthy." : "No service needed a change."));
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        replace(planArea, h("div", { class: "alert alert-error", "data-conflict": "true" },
          "Someone else changed config.ini since you opened this page. Nothing was saved; your edits are still here. ",
          h("button", { type: "button", "data-action": "load-new-version", onclick: async () => {
            const fresh = await call("GET", path);
            version = fresh.etag || fresh.data.version;
            showVersion();
            // A field left as it was takes the other change's value: kept, it would undo that change.
            for (const [key, { input, spec: keySpec }] of fields) {
              if (keySpec.secret && !revealed) continue; // left empty, it stays unchanged whatever the version
              if (same(readInput(input, keySpec), stored[key])) writeInput(input, keySpec, fresh.data.settings[key]);
            }
            stored = fresh.data.settings;
            replace(planArea, h("p", {}, "Loaded version ", h("code", {}, short(version)), ". Review your edits against it again."));
            check();
          } }, "Compare against the new version")));
      } else if (error instanceof ApiError && error.errors.length) {
        showFindings(error.errors.filter((e) => e.severity !== "warning"), []);
        replace(planArea, h("p", { class: "error" }, error.message));
      } else {
        replace(planArea, h("p", { class: "error" }, error.message));
      }
    }
  }

  const reviewButton = h("button", { type: "button", class: "primary", disabled: true, "data-action": "review", onclick: review }, "Review changes");
  // Saving is offered only with the plan in front of you (review first).
  const discard = h("button", { type: "button", onclick: () => { location.reload(); } }, "Discard");
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, CHECK_AFTER_MS); });
  form.addEventListener("submit", (event) => { event.preventDefault(); if (!reviewButton.disabled) review(); });

  const secrets = keys.some((key) => (spec.keys[key] || {}).secret);
  replace(panel,
    h("div", { class: "title" }, h("h2", {}, `[${section}]`), h("span", { class: "muted small" }, "version ", versionCode)),
    spec.description ? h("p", { class: "muted" }, spec.description) : null,
    !editable ? h("p", { class: "notice" }, "Your key reads only: the fields cannot be changed.") : null,
    secrets && can("admin") ? h("p", {}, revealed
      ? h("a", { href: `#/settings/${encodeURIComponent(section)}` }, "Hide the secrets")
      : h("a", { href: `#/settings/${encodeURIComponent(section)}?reveal=1`, "data-action": "reveal" },
        "Reveal the secrets (recorded in the audit log)")) : null,
    form,
    editable ? h("div", { class: "actions" }, reviewButton, discard) : null,
    status, planArea);
  return () => { if (stopFollowing) stopFollowing(); clearTimeout(timer); };
}
