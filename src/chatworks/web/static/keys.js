// The API key, for servers that require one. It is asked for only when the server answers 401,
// kept in this browser's localStorage, and sent as `Authorization: Bearer KEY` on every call.

const KEY_STORAGE = "chatworks.apiKey";

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled: the key is asked for again
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key still works until the page reloads
  }
}

let memoryKey = storedKey();

/** Headers that carry the key, if there is one. */
export function authHeaders() {
  return memoryKey ? { Authorization: `Bearer ${memoryKey}` } : {};
}

/** Drop the key from this browser; the next call that needs one asks again. */
export function forgetKey() {
  memoryKey = "";
  storeKey("");
}

let pending = null; // one dialog for every request that got 401 at the same moment

/**
 * Show the key dialog with the server's reason (missing, invalid, revoked key) and resolve
 * with true once a key is saved, or false if the user cancels.
 */
export function askForKey(reason) {
  if (pending) return pending;
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  const cancel = document.getElementById("key-cancel");
  error.textContent = memoryKey ? reason : "";
  error.hidden = !memoryKey; // the first visit is a question, not an error
  input.value = "";
  pending = new Promise((resolve) => {
    const finish = (saved) => {
      dialog.removeEventListener("close", onClose);
      cancel.removeEventListener("click", onCancel);
      pending = null;
      resolve(saved);
    };
    const onClose = () => {
      const key = dialog.returnValue === "save" ? input.value.trim() : "";
      if (key) {
        memoryKey = key;
        storeKey(key);
      }
      finish(Boolean(key));
    };
    const onCancel = () => dialog.close("cancel");
    dialog.addEventListener("close", onClose);
    cancel.addEventListener("click", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pending;
}
