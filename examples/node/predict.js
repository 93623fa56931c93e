#!/usr/bin/env node
// Classify the rows of a CSV with the exported tabpfn-lite graphs, from Node.js.
//
//   node predict.js train.csv test.csv            test.csv may omit the label column
//   node predict.js data.csv --n-train 100        first 100 rows train, the rest are predicted
//   options: --target NAME       the label column (default: the last column)
//            --encoder FILE      the table encoding written by Python (pfn predict --save-encoder)
//            --model PREFIX      ONNX prefix (default ../../pfn/weights/default)
//
// Columns: numbers, text (categories) or True/False; empty cells, NA, NaN, ... are missing
// values (the graph handles them). Text and True/False columns become category codes, and
// labels class indices, exactly as the Python estimator encodes a CSV (export/FORMAT.md,
// "Table encoding"). The fit graph encodes the training rows once, the predict graph runs
// the test rows against that cache. Output: CSV on stdout, a header with the class labels,
// then one row of probabilities per test row. One network pass, without PFNClassifier's
// ensemble of transformed members.

"use strict";

const fs = require("fs");
const path = require("path");
const ort = require("onnxruntime-node");

// pandas.read_csv's default missing-value markers.
const MISSING = new Set(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
  "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]);
const BOOLS = new Map([["True", true], ["TRUE", true], ["true", true],
  ["False", false], ["FALSE", false], ["false", false]]);
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const byCodePoint = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error("usage: node predict.js TRAIN.csv TEST.csv [--target NAME] [--encoder FILE] " +
                "[--model PREFIX]\n       node predict.js DATA.csv --n-train K [options]");
  process.exit(2);
}

function parseArgs(argv) {
  const args = { files: [], nTrain: null, target: null, encoder: null,
    model: path.join(__dirname, "..", "..", "pfn", "weights", "default") };
  const value = (i) => (i < argv.length ? argv[i] : usage(`${argv[i - 1]} needs a value`));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--n-train") args.nTrain = Number(value(++i));
    else if (a === "--target") args.target = value(++i);
    else if (a === "--encoder") args.encoder = value(++i);
    else if (a === "--model") args.model = value(++i).replace(/\.classification(\.\w+)?\.onnx$/, "");
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("--")) usage(`unknown option ${a}`);
    else args.files.push(a);
  }
  if (args.files.length === 1 && !(Number.isInteger(args.nTrain) && args.nTrain >= 2))
    usage("one CSV needs --n-train K with K >= 2");
  if (args.files.length === 2 && args.nTrain !== null) usage("--n-train is for one CSV only");
  if (args.files.length < 1 || args.files.length > 2) usage("give one or two CSV files");
  return args;
}

// Minimal CSV: commas, optional double quotes (no embedded newlines); cells kept as written.
function splitLine(line) {
  const out = [];
  let cur = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { out.push(cur); cur = ""; }
    else cur += c;
  }
  out.push(cur);
  return out;
}

// { header: names or null, rows: arrays of cells }. A header is a first row with a cell that
// is neither a number nor a missing marker.
function readCsv(file) {
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  const rows = lines.map(splitLine);
  const isHeader = rows.length && rows[0].some((s) => !MISSING.has(s) && !NUMBER.test(s));
  return isHeader ? { header: rows[0], rows: rows.slice(1) } : { header: null, rows };
}

// The encoder Python's TableEncoder fits on a CSV column: numeric when every present cell is
// a number; True/False columns are categories [false, true]; other text: the sorted levels.
function fitColumn(name, cells) {
  const present = cells.filter((s) => !MISSING.has(s));
  if (present.every((s) => NUMBER.test(s))) return { name, kind: "numeric" };
  if (present.every((s) => BOOLS.has(s))) return { name, kind: "categorical", levels: [false, true] };
  return { name, kind: "categorical", levels: [...new Set(present)].sort(byCodePoint) };
}

// Levels of any JSON type (the encoder file may hold numbers or booleans) -> code lookup.
function levelCodes(levels) {
  const codes = new Map(levels.map((v, i) => [`${typeof v}:${v}`, i]));
  return (s) => {
    const key = BOOLS.has(s) ? `boolean:${BOOLS.get(s)}` : NUMBER.test(s) ? `number:${Number(s)}` : null;
    const code = codes.get(`string:${s}`) ?? (key === null ? undefined : codes.get(key));
    return code === undefined ? NaN : code; // unseen categories are missing, as in Python
  };
}

function encodeColumns(columns, rows, index, file) {
  const encoders = columns.map((c) => (c.kind === "numeric" ? null : levelCodes(c.levels)));
  return rows.map((r, i) => columns.map((c, j) => {
    const s = r[index[j]];
    if (s === undefined) throw new Error(`${file}: row ${i + 1} has only ${r.length} cells`);
    if (MISSING.has(s)) return NaN;
    if (encoders[j] !== null) return encoders[j](s);
    if (!NUMBER.test(s)) throw new Error(`${file}: row ${i + 1}, column ${c.name} is not numeric: ${s}`);
    return Number(s);
  }));
}

// Class labels sorted as numpy.unique sorts them (numbers numerically), cells -> indices.
function encodeLabels(labels, classes) {
  if (!classes) {
    const distinct = [...new Set(labels)];
    const numeric = distinct.every((s) => NUMBER.test(s));
    classes = numeric ? distinct.sort((a, b) => Number(a) - Number(b)) : distinct.sort(byCodePoint);
  }
  const code = levelCodes(classes);
  const codes = labels.map(code);
  const bad = labels.find((s, i) => Number.isNaN(codes[i]));
  if (bad !== undefined) throw new Error(`label ${bad} is not among the encoder's classes`);
  return { classes: classes.map(String), codes };
}

function positions(header, names, file) {
  return names.map((name) => {
    const k = header.indexOf(name);
    if (k < 0) throw new Error(`${file} has no column ${name}`);
    return k;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const train = readCsv(args.files[0]);
  let test = args.files.length === 2 ? readCsv(args.files[1]) : null;
  if (test === null) {
    if (args.nTrain >= train.rows.length) throw new Error(`--n-train ${args.nTrain} leaves no test rows`);
    test = { header: train.header, rows: train.rows.slice(args.nTrain) };
    train.rows = train.rows.slice(0, args.nTrain);
  }
  const testFile = args.files[args.files.length - 1];
  const names = train.header ?? train.rows[0].map((_, j) => `x${j}`);
  const spec = args.encoder ? JSON.parse(fs.readFileSync(args.encoder, "utf8")) : null;
  const target = spec?.target?.name ?? args.target ?? names[names.length - 1];
  const t = names.indexOf(target);
  if (t < 0) throw new Error(`${args.files[0]} has no column ${target}`);
  train.rows = train.rows.filter((r) => !MISSING.has(r[t] ?? "")); // as pfn predict does
  const columns = spec ? spec.columns : names.filter((n) => n !== target).map((n) =>
    fitColumn(n, train.rows.map((r) => r[names.indexOf(n)] ?? "")));
  if (columns.length < 1) throw new Error("need at least one feature column besides the label");
  const xTrain = encodeColumns(columns, train.rows, positions(names, columns.map((c) => c.name),
    args.files[0]), args.files[0]);
  const testIndex = positions(test.header ?? names, columns.map((c) => c.name), testFile);
  const xTest = encodeColumns(columns, test.rows, testIndex, testFile);
  const { classes, codes } = encodeLabels(train.rows.map((r) => r[t]), spec?.target?.classes);
  if (classes.length < 2) throw new Error("the training rows have fewer than 2 classes");
  const n = xTrain.length, m = xTest.length, f = columns.length;

  const fit = await ort.InferenceSession.create(`${args.model}.classification.fit.onnx`);
  const predict = await ort.InferenceSession.create(`${args.model}.classification.predict.onnx`);
  const cache = await fit.run({
    x_train: new ort.Tensor("float32", Float32Array.from(xTrain.flat()), [1, n, f]),
    y_train: new ort.Tensor("float32", Float32Array.from(codes), [1, n]),
  });
  const feeds = { x_test: new ort.Tensor("float32", Float32Array.from(xTest.flat()), [1, m, f]) };
  for (const name of predict.inputNames) if (name !== "x_test") feeds[name] = cache[name];
  const { probs } = await predict.run(feeds);
  const c = probs.dims[2];
  if (classes.length > c) throw new Error(`${classes.length} classes; the model takes at most ${c}`);
  const out = [classes.join(",")];
  for (let i = 0; i < m; i++) {
    const row = [];
    for (let k = 0; k < classes.length; k++) row.push(probs.data[i * c + k].toPrecision(9));
    out.push(row.join(","));
  }
  process.stdout.write(out.join("\n") + "\n");
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
