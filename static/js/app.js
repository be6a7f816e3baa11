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
