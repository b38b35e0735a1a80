// Documents: per story, the documents agents and people wrote (GET /doc),
// one rendered as Markdown with its versions (writer and time), edited and
// saved with PUT /doc/{id}; and the documents a pending run waits for, with
// a form to upload each.

import { getJson, getText, request, seg, withQuery } from "../api.js";
import { errorBox, fill, h, when } from "../dom.js";
import { renderMarkdown } from "../markdown.js";

export async function render(container, { story, doc }) {
  fill(container, h("h1", {}, "Documents"), storyPicker(story));
  if (!story) {
    container.append(await recentStories());
    return;
  }
  const [docs, pending] = await Promise.all([
    getJson(withQuery("/doc", { story_id: story })),
    getJson(withQuery("/runs", { story_id: story, status: "pending", limit: 20 })),
  ]);
  const viewer = h("div", { class: "doc-viewer" });
  container.append(
    h("div", { class: "docs-layout" },
      h("nav", { class: "card doc-list", "aria-label": `Documents of ${story}` },
        h("h2", {}, story),
        docs.length === 0 ? h("p", { class: "muted" }, "No documents yet.") : null,
        h("ul", {}, docs.map((d) => h("li", {},
          h("a", { href: docHash(story, d.id), "aria-current": d.id === doc ? "page" : null, "data-doc": d.id }, displayName(story, d.id)),
          h("span", { class: "muted" }, ` ${d.bytes} B · ${when(d.modified)}`)))),
        missingDocs(story, docs, pending.runs)),
      viewer),
  );
  if (doc) await showDocument(viewer, story, doc);
  else fill(viewer, h("p", { class: "muted" }, "Choose a document."));
}

function docHash(story, id) {
  return `#/docs/${encodeURIComponent(story)}/${encodeURIComponent(id)}`;
}

/** `s1__prd` shown as `prd` on the page of story `s1`. */
function displayName(story, id) {
  return id.startsWith(`${story}__`) ? id.slice(story.length + 2) : id;
}

function storyPicker(story) {
  const input = h("input", { id: "doc-story", name: "story", value: story ?? "", required: true, autocomplete: "off", type: "search" });
  const form = h("form", { class: "filters", role: "search" },
    h("label", { for: "doc-story" }, "Story"), input, h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/docs/${encodeURIComponent(input.value.trim())}`;
  });
  return form;
}

async function recentStories() {
  const recent = await getJson("/runs?limit=100");
  const stories = [...new Set(recent.runs.map((r) => r.story_id))];
  return h("section", { class: "card" },
    h("h2", {}, "Stories of recent runs"),
    stories.length === 0
      ? h("p", { class: "muted" }, "No runs yet: start one on the Flows page.")
      : h("ul", { class: "inline-list" }, stories.map((s) => h("li", {}, h("a", { href: `#/docs/${encodeURIComponent(s)}` }, s)))));
}

/** Documents pending runs of the story wait for and that are still absent, each with an upload form. */
function missingDocs(story, docs, pendingRuns) {
  const present = new Set(docs.map((d) => d.id));
  const names = [...new Set(pendingRuns.flatMap((r) => r.pending_docs ?? []))]
    .filter((name) => !present.has(`${story}__${name.replace(/\.md$/, "")}`));
  if (names.length === 0) return null;
  return h("section", { class: "missing" },
    h("h3", {}, "Missing documents"),
    h("p", { class: "muted" }, "A pending run waits for these; upload them, then start the flow again."),
    names.map((name) => uploadForm(story, name)));
}

function uploadForm(story, name) {
  const id = `${story}__${name.replace(/\.md$/, "")}`;
  const field = `upload-${id.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const file = h("input", { type: "file", id: `${field}-file`, accept: ".md,.markdown,.txt,text/markdown,text/plain" });
  const text = h("textarea", { id: `${field}-text`, rows: 4 });
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, `Upload ${name}`);
  file.addEventListener("change", async () => {
    if (file.files?.[0]) text.value = await file.files[0].text();
  });
  const form = h("form", { class: "upload", "data-missing": name },
    h("h4", {}, name),
    h("label", { for: file.id }, "From a file"), file,
    h("label", { for: text.id }, "Or as text"), text,
    h("div", { class: "actions" }, submit), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) {
      fill(status, errorBox({ code: "empty", message: "Choose a file or write the document first." }));
      return;
    }
    submit.disabled = true;
    try {
      await request("PUT", `/doc/${seg(id)}`, { markdown: text.value });
      location.hash = docHash(story, id);
    } catch (error) {
      submit.disabled = false;
      fill(status, errorBox(error));
    }
  });
  return form;
}

async function showDocument(viewer, story, id) {
  const [content, versions] = await Promise.all([
    getText(`/doc/${seg(id)}`),
    getJson(`/doc/${seg(id)}/versions`).catch((error) => ({ error })),
  ]);
  const rendered = h("article", { class: "markdown", id: "doc-rendered" }, renderMarkdown(content));
  const editor = h("textarea", { id: "doc-editor", rows: 18, spellcheck: "true" });
  editor.value = content;
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const save = h("button", { type: "submit", class: "primary", id: "doc-save" }, "Save");
  const cancel = h("button", { type: "button", id: "doc-cancel" }, "Cancel");
  const form = h("form", { class: "doc-edit", hidden: true },
    h("label", { for: "doc-editor" }, "Markdown"), editor, h("div", { class: "actions" }, save, cancel), status);
  const edit = h("button", { type: "button", id: "doc-edit" }, "Edit");
  const history = h("div", { class: "versions" });
  const drawVersions = (list) => fill(history, h("h3", {}, "Versions"), list.error ? errorBox(list.error) : versionList(list));
  drawVersions(versions);

  edit.addEventListener("click", () => {
    form.hidden = false;
    rendered.hidden = true;
    edit.hidden = true;
    editor.focus();
  });
  cancel.addEventListener("click", () => {
    form.hidden = true;
    rendered.hidden = false;
    edit.hidden = false;
    edit.focus();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    fill(status, "Saving…");
    try {
      await request("PUT", `/doc/${seg(id)}`, { markdown: editor.value });
      fill(rendered, renderMarkdown(editor.value));
      form.hidden = true;
      rendered.hidden = false;
      edit.hidden = false;
      fill(status, "Saved.");
      drawVersions(await getJson(`/doc/${seg(id)}/versions`).catch((error) => ({ error })));
    } catch (error) {
      fill(status, errorBox(error));
    }
    save.disabled = false;
  });

  fill(viewer, h("section", { class: "card" },
    h("div", { class: "doc-head" }, h("h2", {}, displayName(story, id)), edit),
    rendered, form, history));
}

function versionList(versions) {
  const newest = [...versions].sort((a, b) => b.version - a.version);
  return h("ol", { class: "version-list", reversed: true },
    newest.map((v) => h("li", { value: v.version },
      `v${v.version} · ${writerOf(v.writer)} · ${when(v.at)} · ${v.bytes} B`)));
}

function writerOf(writer) {
  switch (writer?.kind) {
    case "agent":
      return `agent ${writer.agent} (run ${writer.run_id})`;
    case "api":
      return "edited through the API";
    case "file":
      return "edited as a file";
    default:
      return "unknown writer";
  }
}
