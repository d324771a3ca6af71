// Parses a JSON array of DTDL interfaces with Microsoft's @azure/dtdl-parser.
// Prints the interface ids on success; prints the parser's errors and exits 1 otherwise.
const fs = require("fs");
const { createParser, ModelParsingOption } = require("@azure/dtdl-parser");

async function main() {
  const models = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const parser = createParser(ModelParsingOption.PermitAnyTopLevelElement);
  try {
    const parsed = await parser.parse(models.map((m) => JSON.stringify(m)));
    const ids = Object.keys(parsed).filter((k) => models.some((m) => m["@id"] === k));
    console.log(JSON.stringify({ ok: true, interfaces: ids }));
  } catch (err) {
    const details = err._parsingErrors || err.parsingErrors || err;
    console.log(JSON.stringify({ ok: false, errors: details }, null, 1));
    process.exit(1);
  }
}
main();
