/* The runs table's own controls: the column picker's search box (it hides the columns whose name does not
 * contain the text) and the group rows (a click shows or hides the group's runs). Loaded after ui.js. */
"use strict";

(function () {
  const search = document.getElementById("col-search");
  if (search) {
    search.addEventListener("input", () => {
      const needle = search.value.trim().toLowerCase();
      for (const label of document.querySelectorAll("#col-list label")) {
        label.hidden = needle !== "" && !label.dataset.col.toLowerCase().includes(needle);
      }
    });
  }
  for (const button of document.querySelectorAll("#runs-table .group-toggle")) {
    button.addEventListener("click", () => {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "▾" : "▸";
      for (const tr of document.querySelectorAll("#runs-table tr[data-group]")) {
        if (tr.dataset.group === button.dataset.group) tr.hidden = !open;
      }
    });
  }
})();
