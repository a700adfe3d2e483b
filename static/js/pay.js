/* Paying by card with Stripe.js (no card data ever reaches Accord), and the result page that
   waits for the payment to be confirmed. Loaded after Stripe.js on the card page; no inline
   script (the Content-Security-Policy forbids it). Every message shown comes translated from
   the page's data- attributes or from the server's JSON. */
(function () {
  "use strict";

  function say(status, text, isError) {
    if (!status) return;
    status.textContent = text || "";
    status.classList.toggle("error", Boolean(isError));
  }

  function stripeFor(form) {
    if (typeof window.Stripe !== "function") return null;
    return window.Stripe(form.dataset.publishableKey, { locale: form.dataset.locale || "auto" });
  }

  // --- The card page: set up the card, then ask Accord to charge it -------------------------
  function cardPage(form) {
    var status = document.getElementById("card-status");
    var button = form.querySelector("button[type=submit]");
    var stripe = stripeFor(form);
    if (!stripe) {
      say(status, form.dataset.msgNoStripe, true);
      button.disabled = true;
      return;
    }
    var card = stripe.elements().create("card");
    card.mount("#card-element");

    var newCard = document.getElementById("new-card");
    var choices = form.querySelectorAll("input[name=card]");
    function chosenCard() {
      var checked = form.querySelector("input[name=card]:checked");
      return checked ? checked.value : "new";
    }
    choices.forEach(function (radio) {
      radio.addEventListener("change", function () {
        newCard.hidden = chosenCard() !== "new";
      });
    });

    function busy(on) {
      button.disabled = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
    }

    function fail(message) {
      busy(false);
      say(status, message || form.dataset.msgFailed, true);
    }

    async function post(data) {
      var response = await fetch(form.dataset.confirmUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          "Accept": "application/json",
          "X-CSRFToken": form.dataset.csrfToken
        },
        body: new URLSearchParams(data).toString()
      });
      var body = {};
      try { body = await response.json(); } catch (e) { body = {}; }
      return { ok: response.ok, body: body };
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (button.disabled) return; // one payment per click, even a double one
      busy(true);
      say(status, form.dataset.msgWorking, false);
      var data = {};
      var autopay = document.getElementById("autopay");
      if (autopay && autopay.checked) {
        data.autopay = "yes";
        data.consent_sha = form.dataset.consentSha;
      }
      try {
        var chosen = chosenCard();
        if (chosen !== "new") {
          data.saved_card_id = chosen;
        } else {
          var setup = await stripe.confirmCardSetup(form.dataset.setupSecret, { payment_method: { card: card } });
          if (setup.error) {
            fail(setup.error.message);
            return;
          }
          data.setup_intent_id = setup.setupIntent.id;
          var save = document.getElementById("save-card");
          if (save && save.checked) data.save_card = "yes";
        }
        var answer = await post(data);
        if (!answer.ok || !answer.body.next) {
          fail(answer.body.error);
          return;
        }
        if (answer.body.status === "requires_action" && answer.body.client_secret) {
          // 3-D Secure: the bank's check; the result page then asks Stripe how it ended.
          await stripe.confirmCardPayment(answer.body.client_secret);
        }
        window.location.assign(answer.body.next);
      } catch (error) {
        fail();
      }
    });
  }

  // --- The card page when the bank asks for authentication (3-D Secure) ---------------------
  function authenticatePage(form) {
    var status = document.getElementById("card-status");
    var button = form.querySelector("button[type=submit]");
    var stripe = stripeFor(form);
    if (!stripe) {
      button.disabled = true;
      return;
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      button.disabled = true;
      try {
        await stripe.confirmCardPayment(form.dataset.clientSecret);
        window.location.assign(form.dataset.next);
      } catch (error) {
        button.disabled = false;
        say(status, form.dataset.msgFailed, true);
      }
    });
  }

  // --- The result page: ask every 2 s until the payment is no longer in flight ---------------
  function progressPage(section) {
    var polls = 0;
    async function poll() {
      polls += 1;
      if (polls === 30) {
        var slow = document.getElementById("payment-slow");
        if (slow) slow.hidden = false;
      }
      try {
        var response = await fetch(section.dataset.statusUrl, {
          credentials: "same-origin",
          headers: { "Accept": "application/json" }
        });
        if (response.ok) {
          var body = await response.json();
          if (body.done) {
            window.location.reload();
            return;
          }
        }
      } catch (error) {
        // A slow or lost connection: try again at the next tick.
      }
      window.setTimeout(poll, polls < 60 ? 2000 : 10000);
    }
    window.setTimeout(poll, 2000);
  }

  var cardForm = document.getElementById("card-form");
  if (cardForm) cardPage(cardForm);
  var authForm = document.getElementById("auth-form");
  if (authForm) authenticatePage(authForm);
  var progress = document.getElementById("payment-progress");
  if (progress) progressPage(progress);
})();
