// Device pages: shows how far a CSV upload got (no inline scripts: Content Security
// Policy). The server-side progress of the import is its own page, polled by HTMX.
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target;
  const id = form.getAttribute && form.getAttribute("data-upload-progress");
  const bar = id && document.getElementById(id);
  if (!bar || !event.detail.lengthComputable) {
    return;
  }
  bar.hidden = false;
  bar.max = event.detail.total;
  bar.value = event.detail.loaded;
});
