// Called by scripts/precompress.sh on a release build's JS loader, before terser: removes the classes
// that wasm-bindgen writes for wasm-streams' `IntoUnderlying*` exports, which leptos links in for
// streaming server functions (this app has none) and which wasm-opt already removed from the module
// (frontend/index.html, `--remove-exports`): they could not work anyway. Removes all of them or, if
// wasm-bindgen's output no longer has the expected shape, nothing (the loader then works as it is,
// only larger) and says so.
import { readFileSync, writeFileSync } from "node:fs";

const file = process.argv[2];
const loader = readFileSync(file, "utf8");
const stripped = loader
  .replace(/^export class IntoUnderlying\w+ \{\n[\s\S]*?\n\}\n/gm, "")
  .replace(/^if \(Symbol\.dispose\) IntoUnderlying\w+\.prototype.*\n/gm, "")
  .replace(/^const IntoUnderlying\w+Finalization = [^;]*;\n/gm, "");
if (stripped === loader) {
  // Nothing to strip: a build without wasm-streams.
} else if (/intounderlying/i.test(stripped)) {
  console.error(`strip-streams: ${file} has an unexpected shape; left as it is`);
} else {
  writeFileSync(file, stripped);
}
