// Live lists (brokers, device tiles, a broker's topic tree): a socket sends a
// row, tile or topic count for every item, but a search or a page shows only some. Before
// htmx swaps a socket message, this drops the out-of-band elements whose target
// is not on the page (each would log htmx:oobErrorNoTarget); rows that are shown
// update as before. Used as hx-ext="ws, oob-present" on the socket's element.
// Loaded in the page's <head> before htmx: it defines the extension when the
// document is parsed, before htmx (whose listener comes later) processes it.
document.addEventListener("DOMContentLoaded", () => {
  htmx.defineExtension("oob-present", {
    transformResponse(text) {
      const template = document.createElement("template");
      template.innerHTML = text;
      let dropped = false;
      for (const element of [...template.content.children]) {
        const swap = element.getAttribute("hx-swap-oob");
        // Only "swap me by my id" fragments; ones naming a selector are left as sent.
        const byId = swap === "true" || (swap !== null && !swap.includes(":"));
        if (byId && element.id && !document.getElementById(element.id)) {
          element.remove();
          dropped = true;
        }
      }
      return dropped ? template.innerHTML : text;
    },
  });
});
