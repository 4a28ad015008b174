// The installed versions of the libraries a role uses, for the results file (read from their
// package.json in node_modules: some packages do not export it).
import { readFileSync } from "node:fs";

export function versions(...names) {
  const read = (name) => JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
  return Object.fromEntries(names.map((name) => [name, read(name)]));
}
