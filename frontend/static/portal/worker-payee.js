// Worker tab: where the tab's earnings are paid. "Pay into" picks one of the person's accounts
// or takes a pasted account address (checked here for its form; the scheduler refuses an address
// no account has); the "Paid into" figure follows the choice: the account's balance, or, for an
// address that is not the person's (its balance is its holder's to read), what this tab has
// earned into it.

const OTHER = "other"; // the value of the "Another address…" option
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const ADDRESS_FORM = "an account address is 0x and 40 hex digits (0-9, a-f)";

/**
 * Whom the tab pays: {address, label, balanceURL, balance}. `address` is "" for "the default
 * account" (a person with no account yet: the scheduler makes it); `balanceURL` is null where the
 * balance is not the person's to read.
 */
function ownPayee(option) {
  return {
    address: option.value,
    label: option.dataset.label || option.textContent,
    balanceURL: option.dataset.balanceUrl || null,
    balance: option.dataset.balance ?? null,
  };
}

function pastedPayee(address) {
  return { address, label: address, balanceURL: null, balance: null };
}

function sameAddress(one, other) {
  return one.toLowerCase() === other.toLowerCase();
}

/** The "Pay into" select, its address field and its problem line. */
export class PayeeChoice {
  #select;
  #otherField;
  #input;
  #problem;
  #save;
  #onChange;
  #payee;

  /**
   * @param {HTMLElement} root the element holding [data-worker-payee] and its field
   * @param {{saved: string|null, save: function, onChange: function}} options `saved`: the
   *   address remembered in this browser; save(address) remembers one; onChange(payee) on a change
   */
  constructor(root, { saved, save, onChange }) {
    this.#select = root.querySelector("[data-worker-payee]");
    this.#otherField = root.querySelector("[data-worker-payee-other]");
    this.#input = root.querySelector("[data-worker-payee-address]");
    this.#problem = root.querySelector("[data-worker-payee-problem]");
    this.#save = save;
    this.#onChange = onChange;
    this.#payee = this.#restore(saved);
    this.#select.addEventListener("change", () => this.#picked());
    this.#input.addEventListener("change", () => this.#pasted());
  }

  /** Whom the tab pays now. */
  get payee() {
    return this.#payee;
  }

  /** Takes the address field as it is now (it may not have announced its last change); false,
   * and says why, when "Another address…" is picked and the field holds no address. */
  check() {
    if (this.#select.value !== OTHER) return true;
    this.#pasted();
    if (ADDRESS.test(this.#input.value.trim())) return true;
    this.#input.focus();
    return false;
  }

  #restore(saved) {
    const own = saved ? this.#ownOption(saved) : null;
    if (own) this.#select.value = own.value;
    else if (saved && ADDRESS.test(saved)) {
      this.#select.value = OTHER;
      this.#input.value = saved;
      this.#otherField.hidden = false;
      return pastedPayee(saved);
    }
    if (this.#select.value === OTHER) this.#select.selectedIndex = 0; // the default account
    return ownPayee(this.#select.selectedOptions[0]);
  }

  #ownOption(address) {
    return [...this.#select.options].find((option) => option.value !== OTHER && option.value
      && sameAddress(option.value, address)) ?? null;
  }

  #picked() {
    const other = this.#select.value === OTHER;
    this.#otherField.hidden = !other;
    this.#say("");
    if (!other) this.#choose(ownPayee(this.#select.selectedOptions[0]));
    else if (ADDRESS.test(this.#input.value.trim())) this.#pasted();
    else this.#input.focus();
  }

  #pasted() {
    const address = this.#input.value.trim();
    if (!address) return this.#say(`Paste the address to pay into: ${ADDRESS_FORM}.`);
    if (!ADDRESS.test(address)) return this.#say(`${address} is not an account address: ${ADDRESS_FORM}.`);
    this.#say("");
    const own = this.#ownOption(address);
    if (!own) return this.#choose(pastedPayee(address));
    // One of the person's own accounts: pick it in the list, where its balance can be read.
    this.#select.value = own.value;
    this.#input.value = "";
    this.#otherField.hidden = true;
    return this.#choose(ownPayee(own));
  }

  #choose(payee) {
    if (sameAddress(payee.address, this.#payee.address)) return;
    this.#payee = payee;
    this.#save(payee.address);
    this.#onChange(payee);
  }

  #say(problem) {
    this.#problem.hidden = !problem;
    this.#problem.textContent = problem;
  }
}

/** The "Paid into" figure: the payee's name and its balance (or what this tab earned into it). */
export class PaidIntoFigure {
  #name;
  #amount;
  #note;
  #card;
  #payee = null;
  #fetching = false;
  #fetchAgain = false;

  constructor(card) {
    this.#card = card;
    this.#name = card.querySelector('[data-testid="paid-into"]');
    this.#amount = card.querySelector('[data-testid="paid-into-balance"]');
    this.#note = card.querySelector('[data-testid="paid-into-note"]');
  }

  /** Shows `payee`; `earnedHere`: the credits this tab has earned into it so far. */
  follow(payee, earnedHere) {
    this.#payee = payee;
    this.#name.textContent = payee.label;
    this.#name.title = payee.address;
    this.#note.textContent = payee.balanceURL
      ? "its balance"
      : "earned into it by this tab so far (its balance is for its holder to see)";
    if (payee.balance != null) this.#amount.textContent = payee.balance;
    this.update(earnedHere);
  }

  /** After results were paid: reads the balance again, or shows what this tab earned. */
  update(earnedHere) {
    if (!this.#payee) return;
    if (this.#payee.balanceURL) this.#refreshBalance();
    else this.#amount.textContent = earnedHere;
  }

  /** One request at a time; a payment while one is out asks again once it is answered. */
  async #refreshBalance() {
    if (this.#fetching) {
      this.#fetchAgain = true;
      return;
    }
    this.#fetching = true;
    do {
      this.#fetchAgain = false;
      await this.#readBalance(this.#payee);
    } while (this.#fetchAgain && this.#payee.balanceURL);
    this.#fetching = false;
  }

  async #readBalance(payee) {
    try {
      const response = await fetch(payee.balanceURL, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const { balance } = await response.json();
      if (payee !== this.#payee) return; // the choice changed meanwhile
      this.#amount.textContent = balance;
      this.#amount.title = "";
      this.#card.classList.remove("stale");
    } catch (error) {
      if (payee !== this.#payee) return;
      this.#card.classList.add("stale");
      this.#amount.title = `Could not read the balance: ${error.message}`;
    }
  }
}
