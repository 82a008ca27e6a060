// Accounts and First Devs tabs: dialogs for key actions and the "Refresh balance" button.

// The buttons open and close their dialogs by themselves (`commandfor`/`command`), so a
// click before this script has run still works; older browsers get the same from here.
const invokersBuiltIn = "command" in HTMLButtonElement.prototype;

function invoke(button) {
  const dialog = document.getElementById(button.getAttribute("commandfor"));
  if (!dialog) return;
  const command = button.getAttribute("command");
  if (command === "show-modal") dialog.showModal();
  if (command === "close") dialog.close();
}

async function refreshBalance(card) {
  const output = card.querySelector('[data-testid="balance"]');
  const button = card.querySelector("[data-refresh-balance]");
  button.disabled = true;
  try {
    const response = await fetch(card.dataset.balanceUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    const body = await response.json();
    output.textContent = body.balance;
    card.classList.remove("stale");
  } catch (error) {
    card.classList.add("stale");
    output.title = `Could not refresh: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (!invokersBuiltIn && target.hasAttribute("commandfor")) invoke(target);
  if (target.hasAttribute("data-refresh-balance")) refreshBalance(target.closest(".account"));
});

// A download answers with a file, so the page stays: close the dialog and clear the secrets.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.hasAttribute("data-closes-dialog")) return;
  setTimeout(() => {
    form.querySelectorAll('input[type="password"]').forEach((input) => { input.value = ""; });
    form.closest("dialog").close();
  }, 0);
});
