#!/usr/bin/env node
// Vendors the Pyodide runtime into worker_static/vendor/pyodide/ so the portal serves every
// script and wasm file itself (no CDN at run time).
//
//   npm ci --prefix frontend && node frontend/build.mjs
//
// Copies only the files Pyodide loads at run time, skips files that are already up to date
// (same size and modification time), and removes stale files left by an older version.

import { copyFile, mkdir, readdir, readFile, rm, stat, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const FRONTEND = dirname(fileURLToPath(import.meta.url));
const PYODIDE_PACKAGE = join(FRONTEND, "node_modules", "pyodide");
const VENDOR_PYODIDE = join(FRONTEND, "..", "worker_static", "vendor", "pyodide");

// What loadPyodide({indexURL}) fetches or imports in a browser (checked against pyodide 314):
// the loader, the emscripten module, the wasm binary, the standard library and the lock file.
const RUNTIME_FILES = [
  "pyodide.mjs",
  "pyodide.asm.mjs",
  "pyodide.asm.wasm",
  "python_stdlib.zip",
  "pyodide-lock.json",
];

async function readJson(path) {
  return JSON.parse(await readFile(path, "utf8"));
}

async function statOrNull(path) {
  try {
    return await stat(path);
  } catch (error) {
    if (error.code === "ENOENT") return null;
    throw error;
  }
}

/** Fails early when node_modules is missing or holds another version than package.json pins. */
async function checkInstalledVersion() {
  const pinned = (await readJson(join(FRONTEND, "package.json"))).dependencies.pyodide;
  const manifest = join(PYODIDE_PACKAGE, "package.json");
  if (!(await statOrNull(manifest))) {
    throw new Error("pyodide is not installed: run `npm ci --prefix frontend` first");
  }
  const installed = (await readJson(manifest)).version;
  if (installed !== pinned) {
    throw new Error(
      `frontend/node_modules has pyodide ${installed} but package.json pins ${pinned}: ` +
        "run `npm ci --prefix frontend`",
    );
  }
  return installed;
}

/** Copies one file unless the target already has the same size and modification time. */
async function copyIfChanged(source, target) {
  const [from, to] = await Promise.all([stat(source), statOrNull(target)]);
  // utimes() keeps only about a millisecond of the source's nanosecond timestamp.
  if (to && to.size === from.size && Math.abs(to.mtimeMs - from.mtimeMs) < 2) {
    return false;
  }
  await copyFile(source, target);
  await utimes(target, from.atime, from.mtime);
  return true;
}

async function removeStaleFiles() {
  const stale = (await readdir(VENDOR_PYODIDE)).filter((name) => !RUNTIME_FILES.includes(name));
  await Promise.all(stale.map((name) => rm(join(VENDOR_PYODIDE, name), { recursive: true })));
  return stale;
}

async function main() {
  const version = await checkInstalledVersion();
  await mkdir(VENDOR_PYODIDE, { recursive: true });
  const copied = [];
  for (const name of RUNTIME_FILES) {
    if (await copyIfChanged(join(PYODIDE_PACKAGE, name), join(VENDOR_PYODIDE, name))) {
      copied.push(name);
    }
  }
  const removed = await removeStaleFiles();
  const changes = copied.length || removed.length;
  console.log(
    `pyodide ${version}: ` +
      (changes ? `copied ${copied.length} file(s), removed ${removed.length}` : "up to date") +
      ` in ${VENDOR_PYODIDE}`,
  );
}

main().catch((error) => {
  console.error(`frontend/build.mjs: ${error.message}`);
  process.exit(1);
});
