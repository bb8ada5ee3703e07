// Wire test: talk to a real fimls process the way VS Code's language client does.
//
// VS Code itself cannot run here, so this script uses vscode-languageserver-protocol
// (the JSON-RPC/LSP layer under vscode-languageclient 11) and sends the capabilities,
// initializationOptions and settings payloads that the extension in ../src sends.
//
// Run it through tests/editors/test_vscode.py, which starts a fake DeepSeek server:
//   DEEPSEEK_BASE_URL=http://127.0.0.1:PORT DEEPSEEK_API_KEY=sk-test \
//   FIMLS_COMMAND='["python","-m","fimls"]' node test/wire.mjs
// The fake answers according to test/replies.json. Exits 0 when every check passes,
// 1 on the first mismatch, 2 on a usage error.

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import protocol from 'vscode-languageserver-protocol/node';

const {
  CancellationTokenSource,
  CompletionRequest,
  CompletionTriggerKind,
  DidChangeConfigurationNotification,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializeRequest,
  InitializedNotification,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  InsertTextFormat,
  LSPErrorCodes,
  ShowMessageNotification,
  LogMessageNotification,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  TextDocumentSyncKind,
  createProtocolConnection,
} = protocol;

const here = dirname(fileURLToPath(import.meta.url));
const replies = JSON.parse(readFileSync(join(here, 'replies.json'), 'utf8')).replies;
const reply = (name) => replies.find((r) => r.name === name).text;

if (!process.env.DEEPSEEK_BASE_URL) {
  console.error('wire.mjs: set DEEPSEEK_BASE_URL to a fake DeepSeek (see tests/editors/test_vscode.py)');
  process.exit(2);
}
const command = JSON.parse(process.env.FIMLS_COMMAND ?? '["fimls"]');

let failures = 0;
let checks = 0;
function check(condition, what, detail) {
  checks += 1;
  if (condition) {
    console.log(`ok   ${what}`);
  } else {
    failures += 1;
    console.log(`FAIL ${what}${detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  }
}
function same(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  check(a === e, what, a === e ? undefined : { actual, expected });
}

// A watchdog: a hung server must fail the test, not hang it.
const watchdog = setTimeout(() => {
  console.log('FAIL watchdog: the session took longer than 30 s');
  process.exit(1);
}, 30_000);

const server = spawn(command[0], [...command.slice(1), '--stdio'], {
  stdio: ['pipe', 'pipe', 'pipe'],
  env: process.env,
});
let stderr = '';
server.stderr.on('data', (chunk) => {
  stderr += chunk;
});
const exited = new Promise((resolve) => server.on('exit', (code, signal) => resolve({ code, signal })));

const connection = createProtocolConnection(
  new StreamMessageReader(server.stdout),
  new StreamMessageWriter(server.stdin),
);
const shown = [];
connection.onNotification(ShowMessageNotification.type, (params) => shown.push(params));
connection.onNotification(LogMessageNotification.type, () => undefined);
connection.listen();

// --- initialize: the capabilities vscode-languageclient 11 sends that matter here -----

const capabilities = {
  general: {
    positionEncodings: ['utf-16'],
    staleRequestSupport: { cancel: true, retryOnContentModified: [] },
    regularExpressions: { engine: 'ECMAScript', version: 'ES2020' },
    markdown: { parser: 'marked', version: '1.1.0' },
  },
  workspace: {
    applyEdit: true,
    configuration: true,
    workspaceFolders: true,
    didChangeConfiguration: { dynamicRegistration: true },
    executeCommand: { dynamicRegistration: true },
  },
  window: { workDoneProgress: true, showMessage: { messageActionItem: { additionalPropertiesSupport: true } } },
  textDocument: {
    synchronization: { dynamicRegistration: true, willSave: true, willSaveWaitUntil: true, didSave: true },
    inlineCompletion: { dynamicRegistration: true },
    completion: {
      dynamicRegistration: true,
      contextSupport: true,
      completionItem: {
        snippetSupport: true,
        commitCharactersSupport: true,
        documentationFormat: ['markdown', 'plaintext'],
        deprecatedSupport: true,
        preselectSupport: true,
        tagSupport: { valueSet: [1] },
        insertReplaceSupport: true,
        resolveSupport: { properties: ['documentation', 'detail', 'additionalTextEdits'] },
        insertTextModeSupport: { valueSet: [1, 2] },
        labelDetailsSupport: true,
      },
      insertTextMode: 2,
      completionList: {
        itemDefaults: ['commitCharacters', 'editRange', 'insertTextFormat', 'insertTextMode', 'data'],
        applyKindSupport: true,
      },
    },
  },
};

// What extension.ts's serverSettings() sends: only the settings the user set, each one
// of the server's options.
const OPTIONS = [
  'backend', 'apiKey', 'apiKeyEnv', 'baseUrl', 'model', 'maxTokens', 'maxTokensSingleLine', 'temperature',
  'topP', 'stream', 'debounceMs', 'adaptiveDebounce', 'earlyAnswer', 'earlyAnswerMs', 'prefetch', 'timeoutMs',
  'maxPrefixChars', 'maxSuffixChars', 'promptAnchorLines', 'multiline', 'numSuggestions', 'cacheSize',
  'cacheTtlSeconds', 'maxRetries', 'apiKeyCommand', 'languages', 'allowInsecureHttp', 'template',
  'templateStop', 'pricePerMillionTokens', 'routingId', 'contextOpenFiles', 'contextRecentEdits',
  'contextImports', 'contextBudgetChars',
];
function settings(explicit) {
  const unknown = Object.keys(explicit).filter((key) => !OPTIONS.includes(key));
  if (unknown.length > 0) throw new Error(`not server options: ${unknown}`);
  return { ...explicit };
}

const root = pathToFileURL(join(here, 'workspace')).href;
const init = await connection.sendRequest(InitializeRequest.type, {
  processId: process.pid,
  clientInfo: { name: 'Visual Studio Code', version: '1.91.0' },
  locale: 'en',
  rootPath: null,
  rootUri: root,
  workspaceFolders: [{ uri: root, name: 'workspace' }],
  capabilities,
  initializationOptions: settings({ debounceMs: 150, timeoutMs: 8000 }),
  trace: 'off',
});
const caps = init.capabilities;
same(caps.positionEncoding ?? 'utf-16', 'utf-16', 'initialize: utf-16 position encoding');
check(caps.inlineCompletionProvider !== undefined && caps.inlineCompletionProvider !== false,
  'initialize: inlineCompletionProvider advertised', caps.inlineCompletionProvider);
check(Array.isArray(caps.completionProvider?.triggerCharacters) && caps.completionProvider.triggerCharacters.includes('.'),
  'initialize: completionProvider with trigger characters', caps.completionProvider);
const sync = typeof caps.textDocumentSync === 'number' ? caps.textDocumentSync : caps.textDocumentSync?.change;
same(sync, TextDocumentSyncKind.Incremental, 'initialize: incremental document sync');
const commands = caps.executeCommandProvider?.commands ?? [];
check(['fimls.status', 'fimls.balance', 'fimls.models'].every((c) => commands.includes(c)),
  'initialize: fimls.status/balance/models commands', commands);
same(init.serverInfo?.name, 'fimls', 'initialize: serverInfo.name');

await connection.sendNotification(InitializedNotification.type, {});
// synchronize.configurationSection makes the client send the section right after start;
// the extension's middleware keeps only the server's options.
await connection.sendNotification(DidChangeConfigurationNotification.type, {
  settings: { fimls: settings({ debounceMs: 120, timeoutMs: 8000 }) },
});

// --- the document -----------------------------------------------------------------------

const uri = pathToFileURL(join(here, 'workspace', 'wire_example.py')).href;
const lines = [
  '# fimls wire test: 😀 emoji, 中文 CJK, é accents',
  'def total(xs):',
  '    ',
  '',
  's = "😀中é"; print()',
  'label = ',
  'slow_',
  '',
];
let version = 1;
await connection.sendNotification(DidOpenTextDocumentNotification.type, {
  textDocument: { uri, languageId: 'python', version, text: lines.join('\n') },
});

// JS strings are UTF-16, exactly like VS Code's positions: .length is the column.
const callLine = 4;
const c0 = lines[callLine].indexOf('print(') + 'print('.length;
check(c0 === 18 && [...lines[callLine].slice(0, c0)].length === 17,
  'test setup: the emoji counts twice in UTF-16 columns', { c0 });

async function type(text, line, character) {
  version += 1;
  await connection.sendNotification(DidChangeTextDocumentNotification.type, {
    textDocument: { uri, version },
    contentChanges: [{ range: { start: { line, character }, end: { line, character } }, text }],
  });
}
const pos = (line, character) => ({ line, character });
const range = (line, start, end) => ({ start: pos(line, start), end: pos(line, end) });

async function inline(position, triggerKind, token) {
  const params = { textDocument: { uri }, position, context: { triggerKind } };
  return connection.sendRequest(InlineCompletionRequest.type, params, token);
}
function itemsOf(result) {
  return Array.isArray(result) ? result : (result?.items ?? []);
}

// Type "f", "o" inside print(), one keystroke per incremental change (UTF-16 columns).
await type('f', callLine, c0);
await type('o', callLine, c0 + 1);

let started = Date.now();
let result = await inline(pos(callLine, c0 + 2), InlineCompletionTriggerKind.Automatic);
const automaticMs = Date.now() - started;
let items = itemsOf(result);
same(items.map((i) => i.insertText), [reply('call') + ')'],
  'inline (Automatic): suggestion plus the closing bracket it replaces');
same(items[0]?.range, range(callLine, c0 + 2, c0 + 3), 'inline (Automatic): UTF-16 range over the ")"');
check(automaticMs >= 100, 'inline (Automatic): debounced (debounceMs from didChangeConfiguration)', { automaticMs });

// Classic completion at the same place (VS Code's suggest widget, snippetSupport true).
result = await connection.sendRequest(CompletionRequest.type, {
  textDocument: { uri },
  position: pos(callLine, c0 + 2),
  context: { triggerKind: CompletionTriggerKind.Invoked },
});
same(result?.isIncomplete, true, 'completion: isIncomplete');
const item = result?.items?.[0];
same(result?.items?.length, 1, 'completion: one item');
same(item?.textEdit?.range, range(callLine, c0, c0 + 3), 'completion: textEdit covers the typed word "fo" and ")"');
same(item?.textEdit?.newText, 'fo' + reply('call') + ')', 'completion: newText starts with the typed word');
same(item?.filterText, 'fo' + reply('call') + ')', 'completion: filterText');
same(item?.insertTextFormat, InsertTextFormat.Snippet, 'completion: snippet format (client supports snippets)');
same(item?.label, 'fo' + reply('call') + ')', 'completion: label');

// Keep typing along the suggestion: the rest comes back without a new DeepSeek call.
await type('o', callLine, c0 + 2);
result = await inline(pos(callLine, c0 + 3), InlineCompletionTriggerKind.Automatic);
items = itemsOf(result);
same(items.map((i) => i.insertText), [reply('call').slice(1) + ')'], 'inline (typing through): rest of the suggestion');
same(items[0]?.range, range(callLine, c0 + 3, c0 + 4), 'inline (typing through): range');

// Explicit invocation (Alt+\) on an indented empty line: a multi-line block, no debounce.
started = Date.now();
result = await inline(pos(2, 4), InlineCompletionTriggerKind.Invoked);
const invokedMs = Date.now() - started;
items = itemsOf(result);
same(items.map((i) => i.insertText), [reply('block')], 'inline (Invoked): multi-line block');
same(items[0]?.range, range(2, 4, 4), 'inline (Invoked): empty range at the cursor');
check(invokedMs < 2000, 'inline (Invoked): answered promptly', { invokedMs });

// Snippet escaping: "$" and "}" must be inserted literally by VS Code's snippet engine.
const labelCol = lines[5].length;
result = await connection.sendRequest(CompletionRequest.type, {
  textDocument: { uri },
  position: pos(5, labelCol),
  context: { triggerKind: CompletionTriggerKind.TriggerCharacter, triggerCharacter: ' ' },
});
const snippetItem = result?.items?.[0];
same(snippetItem?.textEdit?.newText, reply('snippet').replace(/[\\$}]/g, (ch) => '\\' + ch),
  'completion: $ and } escaped in the snippet');
same(snippetItem?.textEdit?.range, range(5, labelCol, labelCol), 'completion: empty word, empty range');

// $/cancelRequest while DeepSeek is slow: VS Code cancels whenever the user types on.
const source = new CancellationTokenSource();
started = Date.now();
const slow = inline(pos(6, lines[6].length), InlineCompletionTriggerKind.Invoked, source.token);
setTimeout(() => source.cancel(), 300);
let cancelError;
try {
  const value = await slow;
  cancelError = { unexpectedResult: value };
} catch (error) {
  cancelError = error;
}
const cancelMs = Date.now() - started;
same(cancelError?.code, LSPErrorCodes.RequestCancelled, 'cancel: error -32800 (RequestCancelled)');
check(cancelMs < 2000, 'cancel: answered soon after $/cancelRequest', { cancelMs });

// fimls.status through workspace/executeCommand (what "fimls: Show Status" runs).
const status = await connection.sendRequest(ExecuteCommandRequest.type, { command: 'fimls.status', arguments: [] });
same(status?.positionEncoding, 'utf-16', 'status: positionEncoding');
same(status?.openDocuments, 1, 'status: openDocuments');
same(status?.apiKey, 'set', 'status: API key from the environment');
same(status?.settings?.debounceMs, 120, 'status: didChangeConfiguration applied');
same(status?.settings?.apiKey, null, 'status: the key from the environment is not in the settings');
check(!JSON.stringify(status).includes(process.env.DEEPSEEK_API_KEY ?? 'sk-test'), 'status: key never echoed');

const problems = shown.filter((m) => m.type <= 2);
same(problems, [], 'no error/warning popups (settings payloads accepted)');

// --- shutdown ------------------------------------------------------------------------

await connection.sendRequest(ShutdownRequest.type);
await connection.sendNotification(ExitNotification.type);
const exit = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000))]);
same(exit, { code: 0, signal: null }, 'exit: server process ended cleanly after shutdown/exit');
connection.dispose();
clearTimeout(watchdog);

console.log(JSON.stringify({ checks, failures, automaticMs, invokedMs, cancelMs }));
if (failures > 0) {
  console.log('--- fimls stderr ---\n' + stderr);
}
process.exit(failures > 0 ? 1 : 0);
