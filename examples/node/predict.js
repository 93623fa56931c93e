#!/usr/bin/env node
// Classify the rows of a CSV with the exported tabpfn-lite graph, from Node.js.
//
//   node predict.js data.csv --n-train 100        first 100 rows train, the rest are predicted
//   node predict.js train.csv test.csv            test.csv may omit the label column
//   options: --model PATH (default ../../pfn/weights/default.classification.onnx)
//
// CSV: numeric feature columns, the label in the last column; an optional header row;
// empty cells, NA and NaN are missing values (the graph handles them). Labels are encoded
// as the index of the label among the sorted distinct training labels (numerically if all
// are numbers), which is what the Python side does before calling the graph. Output: CSV on
// stdout, a header with the class labels, then one row of probabilities per test row.
// This runs the graph once, like OnnxEngine; it does not do PFNClassifier's ensembling.

"use strict";

const fs = require("fs");
const path = require("path");
const ort = require("onnxruntime-node");

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error("usage: node predict.js DATA.csv --n-train K [--model PATH]\n" +
                "       node predict.js TRAIN.csv TEST.csv [--model PATH]");
  process.exit(2);
}

function parseArgs(argv) {
  const args = { files: [], nTrain: null,
    model: path.join(__dirname, "..", "..", "pfn", "weights", "default.classification.onnx") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--n-train") args.nTrain = Number(argv[++i]);
    else if (a === "--model") args.model = argv[++i];
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

// Minimal CSV: commas, optional double quotes (no embedded newlines).
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
  return out.map((s) => s.trim());
}

const MISSING = new Set(["", "NA", "NaN", "nan", "null"]);
const toNumber = (s) => (MISSING.has(s) ? NaN : Number(s));

function readCsv(file) {
  const lines = fs.readFileSync(file, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  let rows = lines.map(splitLine);
  // A header is a first row with a cell that is neither a number nor a missing marker.
  if (rows.length && rows[0].some((s) => !MISSING.has(s) && Number.isNaN(Number(s))))
    rows = rows.slice(1);
  return rows;
}

function features(rows, width, file) {
  return rows.map((r, i) => {
    const v = r.slice(0, width).map(toNumber);
    if (v.length !== width) throw new Error(`${file}: row ${i + 1} has ${r.length} cells`);
    v.forEach((x, j) => {
      if (!MISSING.has(r[j]) && Number.isNaN(x))
        throw new Error(`${file}: row ${i + 1}, column ${j + 1} is not numeric: ${r[j]}`);
    });
    return v;
  });
}

function encodeLabels(labels) {
  const numeric = labels.every((s) => !Number.isNaN(Number(s)) && s !== "");
  const distinct = [...new Set(labels)];
  distinct.sort(numeric ? (a, b) => Number(a) - Number(b) : undefined);
  const index = new Map(distinct.map((c, i) => [c, i]));
  return { classes: distinct, codes: labels.map((s) => index.get(s)) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let trainRows, testRows, testFile;
  if (args.files.length === 1) {
    const rows = readCsv(args.files[0]);
    if (args.nTrain >= rows.length) throw new Error(`--n-train ${args.nTrain} leaves no test rows`);
    trainRows = rows.slice(0, args.nTrain);
    testRows = rows.slice(args.nTrain);
    testFile = args.files[0];
  } else {
    trainRows = readCsv(args.files[0]);
    testRows = readCsv(args.files[1]);
    testFile = args.files[1];
  }
  const nCols = trainRows[0].length;
  const f = nCols - 1;
  if (f < 1) throw new Error("need at least one feature column before the label");
  const xTrain = features(trainRows, f, args.files[0]);
  const { classes, codes } = encodeLabels(trainRows.map((r) => r[f]));
  if (classes.length < 2) throw new Error("the training rows have fewer than 2 classes");
  const xTest = features(testRows, f, testFile);
  const n = xTrain.length, t = xTest.length;

  const session = await ort.InferenceSession.create(args.model);
  const feeds = {
    x_train: new ort.Tensor("float32", Float32Array.from(xTrain.flat()), [1, n, f]),
    y_train: new ort.Tensor("float32", Float32Array.from(codes), [1, n]),
    x_test: new ort.Tensor("float32", Float32Array.from(xTest.flat()), [1, t, f]),
  };
  const { probs } = await session.run(feeds);
  const c = probs.dims[2];
  if (classes.length > c) throw new Error(`${classes.length} classes; the model takes at most ${c}`);
  const out = [classes.join(",")];
  for (let i = 0; i < t; i++) {
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
