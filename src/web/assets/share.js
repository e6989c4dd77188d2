// An upload link's drop box: each chosen file is sent as it is read, with
// its progress; the visitor sees only what they sent.
"use strict";

const box = document.getElementById("dropbox");
const input = document.getElementById("share-upload");
const list = document.getElementById("share-progress");

function send(file) {
  const li = document.createElement("li");
  li.dataset.file = file.name;
  const label = document.createElement("span");
  label.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  const note = document.createElement("span");
  note.className = "note";
  li.append(label, bar, note);
  list.append(li);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", box.dataset.put + "?name=" + encodeURIComponent(file.name));
    xhr.setRequestHeader("x-share-upload", "1");
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => (bar.value = e.loaded);
    xhr.onload = () => {
      if (xhr.status === 201) {
        bar.value = bar.max;
        li.classList.add("done");
        note.textContent = "sent";
      } else {
        li.classList.add("failed");
        let message = xhr.statusText;
        try {
          message = JSON.parse(xhr.responseText).error || message;
        } catch (_) { /* a page, not JSON */ }
        note.textContent = message;
      }
      resolve();
    };
    xhr.onerror = () => {
      li.classList.add("failed");
      note.textContent = "connection lost; send it again";
      resolve();
    };
    xhr.send(file);
  });
}

if (box && input) {
  input.addEventListener("change", async () => {
    for (const file of [...input.files]) await send(file);
    input.value = "";
  });
}
