// The broker page's live feed: asks the broker socket for the feed when it opens
// (again after every reconnect, which re-syncs from the history), and handles
// filter, pause/resume, clear and quick publish. Rendering stays on the server.
(() => {
  const MAX_ROWS = 500;
  let socket = null;
  let paused = false;

  const feed = () => document.querySelector("[data-live-feed]");

  function send(request) {
    if (socket) {
      socket.send(JSON.stringify(request));
    }
  }

  function requestFeed() {
    const form = document.querySelector("[data-live-filter]");
    send({
      action: "feed",
      filter: form ? form.elements.filter.value : "",
      paused: paused,
    });
  }

  document.addEventListener("htmx:wsOpen", (event) => {
    if (document.querySelector("[data-live-topics]")) {
      event.detail.socketWrapper.send(JSON.stringify({ action: "topics" }));
    }
    if (document.querySelector("[data-live-clients]")) {
      event.detail.socketWrapper.send(JSON.stringify({ action: "clients" }));
    }
    if (!feed()) {
      return;
    }
    socket = event.detail.socketWrapper;
    requestFeed();
  });

  document.addEventListener("htmx:wsClose", () => {
    const root = feed();
    if (root) {
      root.classList.add("disconnected");
    }
  });

  document.addEventListener("htmx:wsAfterMessage", () => {
    const root = feed();
    if (!root) {
      return;
    }
    root.classList.remove("disconnected");
    // The DOM stays bounded however long the page is open.
    const rows = document.getElementById("live-rows");
    while (rows && rows.children.length > MAX_ROWS) {
      rows.lastElementChild.remove();
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches && form.matches("[data-live-filter]")) {
      event.preventDefault();
      requestFeed();
    } else if (form.matches && form.matches("[data-live-publish]")) {
      event.preventDefault();
      const fields = form.elements;
      send({
        action: "publish",
        topic: fields.topic.value,
        payload: fields.payload.value,
        qos: fields.qos.value,
        retain: fields.retain.checked ? "on" : "",
      });
    }
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button");
    if (!button) {
      return;
    }
    if (button.hasAttribute("data-live-pause")) {
      paused = !paused;
      button.textContent = paused
        ? button.dataset.labelResume
        : button.dataset.labelPause;
      button.setAttribute("aria-pressed", paused ? "true" : "false");
      requestFeed();
    } else if (button.hasAttribute("data-live-clear")) {
      const rows = document.getElementById("live-rows");
      if (rows) {
        rows.replaceChildren();
      }
    }
  });
})();
