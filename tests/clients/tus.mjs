// tus-js-client from Node, as a partner's script would use it:
//   node tus.mjs upload FILE ENDPOINT COOKIE CSRF STORE CHUNK
//     uploads FILE to ENDPOINT (folder "/"), resuming an upload the store
//     remembers for it; prints "url U", "resumed N", "progress N", "done".
//   node tus.mjs terminate URL COOKIE CSRF
// tests/suite/web.rs runs it, kills it, runs it again.
import fs from "node:fs";
import path from "node:path";
import * as tus from "tus-js-client";

const [mode, ...args] = process.argv.slice(2);

function headers(cookie, csrf) {
  return { cookie, "x-csrf-token": csrf };
}

if (mode === "terminate") {
  const [url, cookie, csrf] = args;
  await tus.Upload.terminate(url, { headers: headers(cookie, csrf) });
  console.log("terminated");
} else {
  const [file, endpoint, cookie, csrf, store, chunk] = args;
  const upload = new tus.Upload(fs.createReadStream(file), {
    endpoint,
    chunkSize: Number(chunk),
    uploadSize: fs.statSync(file).size,
    metadata: { filename: path.basename(file), folder: "/" },
    headers: headers(cookie, csrf),
    urlStorage: new tus.FileUrlStorage(store),
    retryDelays: [0, 500, 1000],
    onUploadUrlAvailable() {
      console.log("url " + upload.url);
    },
    onProgress(sent) {
      console.log("progress " + sent);
    },
    onSuccess() {
      console.log("done");
    },
    onError(e) {
      console.error("failed: " + e);
      process.exit(1);
    },
  });
  const previous = await upload.findPreviousUploads();
  if (previous.length > 0) {
    upload.resumeFromPreviousUpload(previous[0]);
    console.log("resuming");
  }
  upload.start();
}
