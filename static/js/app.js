// Small behaviours shared by every page; no inline scripts (Content Security Policy).
document.addEventListener("change", (event) => {
  const el = event.target;
  if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit")) {
    el.form.requestSubmit();
  }
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
}, true);

// Webhook header rows: until the user ticks or unticks "Secret" themselves, the
// box follows the name (Authorization, Cookie, names with key, token, secret or
// passw), as the server decides for a row still marked data-header-auto.
const SECRET_HEADER = /^(authorization|proxy-authorization|cookie)$|key|token|secret|passw/i;
document.addEventListener("input", (event) => {
  const el = event.target;
  if (!(el instanceof HTMLInputElement) || !el.hasAttribute("data-header-name")) return;
  const row = el.closest("[data-header-row]");
  const auto = row && row.querySelector("[data-header-auto]");
  const box = row && row.querySelector("[data-header-secret]");
  if (auto && box && auto.value === "1") box.checked = SECRET_HEADER.test(el.value.trim());
});
document.addEventListener("change", (event) => {
  const el = event.target;
  if (!(el instanceof HTMLInputElement) || !el.hasAttribute("data-header-secret")) return;
  const auto = el.closest("[data-header-row]")?.querySelector("[data-header-auto]");
  if (auto) auto.value = "";
});

// A refused or failed htmx request swaps nothing in (htmx's default for 4xx/5xx):
// say so at the top of the page, with the server's reason when its error page
// names one (#error-reason on 403.html and 404.html), instead of a silent nothing.
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let reason = "";
  if (xhr && xhr.responseText) {
    const doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const named = doc.getElementById("error-reason");
    reason = named ? named.textContent.trim() : "";
  }
  if (!reason) {
    reason = xhr && xhr.status === 403
      ? "Your role does not allow this."
      : `The request failed (${xhr ? xhr.status : "no answer"}).`;
  }
  const main = document.querySelector("main");
  if (!main) return;
  let box = document.getElementById("request-error");
  if (!box) {
    box = document.createElement("section");
    box.id = "request-error";
    box.className = "flash";
    box.setAttribute("aria-live", "assertive");
    main.prepend(box);
  }
  const line = document.createElement("p");
  line.className = "flash-error";
  line.setAttribute("role", "alert");
  line.textContent = reason;
  box.replaceChildren(line);
  box.scrollIntoView({ block: "nearest" });
});

// A field's feedback swapped in by id (the broker form's Test) decides whether
// its input is marked invalid: an error cleared by a later Test clears the mark.
document.addEventListener("htmx:afterSettle", () => {
  for (const box of document.querySelectorAll(".field-feedback")) {
    const input = box.closest(".field")?.querySelector("input, select, textarea");
    if (!input || input.type === "hidden") continue;
    if (box.querySelector(".error")) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
});
