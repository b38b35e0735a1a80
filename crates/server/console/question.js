// One open question of a run (an interrupt, SPEC 8.3) as a form: free text
// for `ask`, one option for `choose`, approve or reject with feedback for
// `approve`. Answering posts POST /runs/{id}/resume.

import { postJson, seg } from "./api.js";
import { errorBox, fill, h } from "./dom.js";

let formCount = 0;

/**
 * The form for `interrupt` of run `runId`. `onAnswered(reply)` runs once
 * the server has accepted the answer (the run is queued or running again).
 */
export function questionForm(runId, interrupt, onAnswered) {
  formCount += 1;
  const id = `q${formCount}`;
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const form = h("form", { class: "question", "data-interrupt": interrupt.id });
  const send = async (body, buttons) => {
    buttons.forEach((button) => (button.disabled = true));
    fill(status, "Sending…");
    try {
      const reply = await postJson(`/runs/${seg(runId)}/resume`, { interrupt_id: interrupt.id, ...body });
      fill(status, "Answered: the run continues.");
      onAnswered?.(reply);
    } catch (error) {
      buttons.forEach((button) => (button.disabled = false));
      fill(status, errorBox(error));
    }
  };

  form.append(
    h("p", { class: "question-meta" }, `${interrupt.agent} · step ${interrupt.step} · ${interrupt.kind}`),
    h("p", { class: "prompt" }, interrupt.prompt),
  );
  if (interrupt.documents?.length) {
    form.append(h("p", { class: "muted" }, "Documents to review: ", interrupt.documents.join(", ")));
  }

  if (interrupt.kind === "approve") {
    const feedback = h("textarea", { id: `${id}-feedback`, name: "feedback", rows: 3 });
    const approve = h("button", { type: "submit", value: "approve", class: "primary" }, "Approve");
    const reject = h("button", { type: "submit", value: "reject", class: "danger" }, "Reject");
    form.append(
      h("label", { for: `${id}-feedback` }, "Feedback (optional)"),
      feedback,
      h("div", { class: "actions" }, approve, reject),
      status,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const decision = event.submitter?.value === "reject" ? "reject" : "approve";
      const body = { decision };
      if (feedback.value.trim()) body.feedback = feedback.value.trim();
      send(body, [approve, reject]);
    });
    return form;
  }

  if (interrupt.kind === "choose") {
    const options = (interrupt.options ?? []).map((option, n) =>
      h("label", { class: "option" }, h("input", { type: "radio", name: `${id}-choice`, value: option, required: n === 0 }), " ", option),
    );
    const answer = h("button", { type: "submit", class: "primary" }, "Answer");
    form.append(h("fieldset", {}, h("legend", {}, "Choose one"), options), h("div", { class: "actions" }, answer), status);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = form.querySelector(`input[name="${id}-choice"]:checked`);
      if (chosen) send({ answer: chosen.value }, [answer]);
    });
    return form;
  }

  const text = h("textarea", { id: `${id}-answer`, name: "answer", rows: 3, required: true });
  const answer = h("button", { type: "submit", class: "primary" }, "Answer");
  form.append(h("label", { for: `${id}-answer` }, "Your answer"), text, h("div", { class: "actions" }, answer), status);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (text.value.trim()) send({ answer: text.value.trim() }, [answer]);
  });
  return form;
}
