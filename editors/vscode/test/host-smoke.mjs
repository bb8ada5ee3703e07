// Smoke test of the built extension (out/extension.js) without VS Code.
//
// VS Code cannot be downloaded here, so this loads the compiled extension into Node with
// a stand-in for the `vscode` module: the parts this extension and vscode-languageclient
// touch while starting are real (configuration, commands, output channel, events), the
// rest are inert stubs. The language client then really spawns `fimls.serverPath` and
// initializes it, so this checks what wire.mjs cannot: that activate() starts the server
// with the configured path/args, sends serverSettings() as initializationOptions, sends
// the filtered `fimls` section on configuration changes, and that "fimls: Show Status"
// round-trips through workspace/executeCommand. The client's JSON trace of every LSP
// message shows what went over the wire: machine-level settings only from the user
// settings, only in initializationOptions, never in workspace configuration.
//
// Env: FIMLS_SERVER_PATH (a fimls executable), DEEPSEEK_BASE_URL, DEEPSEEK_API_KEY,
// FIMLS_MACHINE_LEVEL (JSON list of the machine-level settings).
// Prints one JSON line with what it saw; exits 1 on a failed check.

import Module, { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

// --- a small `vscode` ----------------------------------------------------------------------

function inert(name) {
  const cache = new Map();
  const target = function () {};
  return new Proxy(target, {
    get(_t, prop) {
      if (prop === 'then') return undefined; // not a thenable
      if (prop === Symbol.iterator) return [][Symbol.iterator].bind([]);
      if (prop === Symbol.toPrimitive) return () => `[${name}]`;
      if (prop === 'dispose') return () => undefined;
      if (!cache.has(prop)) cache.set(prop, inert(`${name}.${String(prop)}`));
      return cache.get(prop);
    },
    apply: () => inert(`${name}()`),
    construct: () => inert(`new ${name}`),
  });
}

class Disposable {
  constructor(fn) { this._fn = fn; }
  static from(...items) { return new Disposable(() => items.forEach((d) => d?.dispose?.())); }
  dispose() { this._fn?.(); this._fn = undefined; }
}

class EventEmitter {
  constructor() {
    this._listeners = new Set();
    this.event = (listener) => {
      this._listeners.add(listener);
      return new Disposable(() => this._listeners.delete(listener));
    };
  }
  fire(value) { for (const l of [...this._listeners]) l(value); }
  dispose() { this._listeners.clear(); }
}

const MACHINE = JSON.parse(process.env.FIMLS_MACHINE_LEVEL ?? '[]');
const userSettings = {
  'fimls.serverPath': process.env.FIMLS_SERVER_PATH,
  'fimls.serverArgs': ['-v'],
  'fimls.debounceMs': 90,
  'fimls.maxTokens': 200,
  'fimls.allowInsecureHttp': false,
  // Every LSP message into the output channel as JSON (collected in `wire` below).
  'fimls.trace.server': { verbosity: 'verbose', format: 'json' },
  'fimls.trace.server.verbosity': 'verbose',
  'fimls.trace.server.format': 'json',
};
// A cloned repository's .vscode/settings.json and a folder's settings: they may tune
// completion, but must not choose the program, the engine, the endpoint or the key.
const EVIL = {
  serverPath: '/nonexistent/evil-fimls',
  serverArgs: ['--evil'],
  backend: 'raw',
  baseUrl: 'http://203.0.113.9:9',
  apiKey: 'sk-workspace-evil',
  apiKeyCommand: 'touch /tmp/fimls-workspace-evil',
  apiKeyEnv: 'EVIL_KEY',
  allowInsecureHttp: true,
};
const evilSettings = Object.fromEntries(Object.entries(EVIL).map(([key, value]) => [`fimls.${key}`, value]));
const workspaceSettings = { ...evilSettings, 'fimls.temperature': 0.5 };
const folderSettings = { ...evilSettings, 'fimls.topP': 0.9 };
const wire = [];
const configChanged = new EventEmitter();
const commands = new Map();
const logLines = [];
const messages = [];

function configuration(section) {
  const full = (key) => (section ? `${section}.${key}` : key);
  return {
    get: (key, fallback) => (full(key) in userSettings ? userSettings[full(key)] : fallback),
    has: (key) => full(key) in userSettings,
    inspect: (key) => ({
      key: full(key),
      globalValue: userSettings[full(key)],
      workspaceValue: workspaceSettings[full(key)],
      workspaceFolderValue: folderSettings[full(key)],
    }),
    update: async () => undefined,
  };
}

function outputChannel(name) {
  const log = (level) => (message, ...args) => logLines.push(`[${level}] ${message} ${args.map(String).join(' ')}`);
  const trace = (message) => {
    try {
      const data = JSON.parse(message);
      if (data?.isLSPMessage) {
        wire.push(data);
        return;
      }
    } catch {
      // not a JSON trace line
    }
    log('trace')(message);
  };
  return {
    name,
    logLevel: 1, // Trace: the client traces LSP messages only at this level
    onDidChangeLogLevel: new EventEmitter().event,
    trace, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'),
    append: (text) => logLines.push(text), appendLine: (text) => logLines.push(text),
    replace: () => undefined, clear: () => undefined, show: () => undefined, hide: () => undefined,
    dispose: () => undefined,
  };
}

const vscodeStub = new Proxy({
  version: '1.91.0',
  Disposable,
  EventEmitter,
  LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
  env: new Proxy({ language: 'en', appName: 'Visual Studio Code', machineId: 'smoke', sessionId: 'smoke' },
    { get: (t, p) => (p in t ? t[p] : inert(`env.${String(p)}`)) }),
  workspace: new Proxy({
    workspaceFolders: undefined,
    textDocuments: [],
    notebookDocuments: [],
    getConfiguration: configuration,
    onDidChangeConfiguration: configChanged.event,
    getWorkspaceFolder: () => undefined,
  }, { get: (t, p) => (p in t ? t[p] : inert(`workspace.${String(p)}`)) }),
  window: new Proxy({
    createOutputChannel: outputChannel,
    visibleTextEditors: [],
    tabGroups: { all: [], onDidChangeTabs: new EventEmitter().event, onDidChangeTabGroups: new EventEmitter().event },
    showInformationMessage: async (message) => { messages.push(['info', message]); return undefined; },
    showWarningMessage: async (message) => { messages.push(['warning', message]); return undefined; },
    showErrorMessage: async (message) => { messages.push(['error', message]); return undefined; },
  }, { get: (t, p) => (p in t ? t[p] : inert(`window.${String(p)}`)) }),
  commands: new Proxy({
    registerCommand: (id, fn) => { commands.set(id, fn); return new Disposable(() => commands.delete(id)); },
    executeCommand: async (id, ...args) => commands.get(id)?.(...args),
  }, { get: (t, p) => (p in t ? t[p] : inert(`commands.${String(p)}`)) }),
  extensions: { all: [], getExtension: () => undefined, onDidChange: new EventEmitter().event },
}, { get: (t, p) => (p in t ? t[p] : inert(`vscode.${String(p)}`)) });

const originalLoad = Module._load;
Module._load = function (request, parent, isMain) {
  return request === 'vscode' ? vscodeStub : originalLoad.call(this, request, parent, isMain);
};

// --- run the extension -------------------------------------------------------------------

let failures = 0;
function check(condition, what, detail) {
  console.log(`${condition ? 'ok  ' : 'FAIL'} ${what}${condition || detail === undefined ? '' : `: ${JSON.stringify(detail)}`}`);
  if (!condition) failures += 1;
}
const watchdog = setTimeout(() => {
  console.log('FAIL watchdog: 30 s');
  console.log(logLines.join('\n'));
  process.exit(1);
}, 30_000);

const extension = require(join(here, '..', 'out', 'extension.js'));
const context = { subscriptions: [], extensionPath: join(here, '..'), globalState: inert('globalState') };

await extension.activate(context);
check(commands.has('fimls.showStatus') && commands.has('fimls.restartServer'), 'activate: commands registered', [...commands.keys()]);
// The client registers the server's executeCommandProvider commands itself, which is why
// the extension's own commands use other names.
check(['fimls.status', 'fimls.balance', 'fimls.models'].every((c) => commands.has(c)),
  'client: server commands registered under their own names', [...commands.keys()]);

// "fimls: Show Status" (the extension's command) -> workspace/executeCommand fimls.status.
function lastStatus() {
  const line = [...logLines].reverse().find((l) => l.startsWith('[info] status: '));
  return line === undefined ? undefined : JSON.parse(line.slice('[info] status: '.length));
}
await commands.get('fimls.showStatus')();
let status = lastStatus();
check(status !== undefined, 'show status: answer logged to the output channel', logLines.slice(-5));
check(status?.positionEncoding === 'utf-16', 'server: utf-16 negotiated', status?.positionEncoding);
check(status?.settings?.debounceMs === 90 && status?.settings?.maxTokens === 200,
  'initializationOptions: explicit settings arrived', status?.settings);
check(status?.baseUrl === process.env.DEEPSEEK_BASE_URL, 'initializationOptions: unset baseUrl left to DEEPSEEK_BASE_URL', status?.baseUrl);
check(status?.apiKey === 'set', 'server: API key from the environment', status?.apiKey);
check(status?.settings?.temperature === 0.5, 'workspace settings: completion options honoured', status?.settings?.temperature);
check(status?.baseUrl === process.env.DEEPSEEK_BASE_URL && !logLines.some((l) => l.includes('evil-fimls')),
  'workspace settings: serverPath/baseUrl ignored (machine scope)', status?.baseUrl);

// --- machine-level settings ---------------------------------------------------------------
// What the client sent: params of each request/notification of one method, in order.
const sent = (method) => wire
  .filter((m) => (m.type === 'send-request' || m.type === 'send-notification') && m.message?.method === method)
  .map((m) => m.message.params);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const leaked = (settings) => MACHINE.filter((key) => settings !== null && typeof settings === 'object' && key in settings);

check(MACHINE.length >= 8 && MACHINE.every((key) => key in EVIL), 'the workspace sets every machine-level setting', MACHINE);
check(MACHINE.every((key) => extension.MACHINE_LEVEL.has(key)) && extension.MACHINE_LEVEL.size === MACHINE.length,
  'extension: MACHINE_LEVEL is exactly the machine-level settings', [...extension.MACHINE_LEVEL]);
const globalOnly = MACHINE.filter((key) => !same(extension.explicitValue(key), userSettings[`fimls.${key}`]));
check(globalOnly.length === 0, 'machine-level settings read from the user settings only', globalOnly);
check(extension.explicitValue('temperature') === 0.5 && extension.explicitValue('topP') === 0.9,
  'other settings: workspace and folder values honoured', [extension.explicitValue('temperature'), extension.explicitValue('topP')]);
const inits = sent('initialize');
check(inits.length === 1, 'wire: one initialize request traced', inits.length);
const initOptions = inits[0]?.initializationOptions ?? {};
const wrongInit = MACHINE.filter((key) => key in initOptions && !same(initOptions[key], userSettings[`fimls.${key}`]));
check(wrongInit.length === 0 && initOptions.allowInsecureHttp === false && !('baseUrl' in initOptions),
  'wire: initializationOptions carry the user\'s machine-level settings, no workspace value', initOptions);
check(initOptions.temperature === 0.5 && initOptions.topP === 0.9 && initOptions.debounceMs === 90,
  'wire: initializationOptions carry workspace/folder completion settings', initOptions);
let changes = sent('workspace/didChangeConfiguration');
check(changes.length >= 1 && changes.every((p) => leaked(p?.settings?.fimls).length === 0 && 'fimls' in (p?.settings ?? {})),
  'wire: didChangeConfiguration carries no machine-level setting', changes);
check(changes.at(-1)?.settings?.fimls?.temperature === 0.5, 'wire: didChangeConfiguration carries the others', changes.at(-1));

// A server asking through workspace/configuration gets the same view.
const answerSection = extension.configurationAnswer('fimls', { baseUrl: EVIL.baseUrl, temperature: 0.1 });
check(leaked(answerSection).length === 0 && answerSection.temperature === 0.5,
  'workspace/configuration "fimls": no machine-level setting', answerSection);
check(extension.configurationAnswer('fimls.baseUrl', EVIL.baseUrl) === null
  && extension.configurationAnswer('fimls.apiKeyCommand', EVIL.apiKeyCommand) === null
  && extension.configurationAnswer('fimls.temperature', 0.1) === 0.5,
  'workspace/configuration "fimls.<key>": machine-level keys answer null');
const whole = extension.configurationAnswer(undefined, { editor: { tabSize: 4 }, fimls: { ...EVIL } });
check(whole?.editor?.tabSize === 4 && leaked(whole?.fimls).length === 0,
  'workspace/configuration (whole): fimls section filtered, others kept', whole);
check(same(extension.configurationAnswer('editor', { tabSize: 4 }), { tabSize: 4 }),
  'workspace/configuration: other sections untouched');

// Change a setting: the client re-sends the fimls section through the middleware.
userSettings['fimls.debounceMs'] = 40;
delete userSettings['fimls.maxTokens'];
configChanged.fire({ affectsConfiguration: (section) => section === 'fimls' || section === 'fimls.debounceMs' || section === 'fimls.maxTokens' });
// maxTokens was sent at startup and is gone now: the extension restarts the server.
for (let i = 0; i < 50; i += 1) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  await commands.get('fimls.showStatus')();
  status = lastStatus();
  if (status?.settings?.maxTokens === 256) break;
}
check(status?.settings?.debounceMs === 40, 'settings change: new value applied', status?.settings?.debounceMs);
check(status?.settings?.maxTokens === 256, 'settings change: removed setting back to the default', status?.settings?.maxTokens);

// A plain change (no removal) goes out as workspace/didChangeConfiguration.
userSettings['fimls.debounceMs'] = 70;
configChanged.fire({ affectsConfiguration: (section) => section === 'fimls' || section === 'fimls.debounceMs' });
await new Promise((resolve) => setTimeout(resolve, 300));
await commands.get('fimls.showStatus')();
status = lastStatus();
check(status?.settings?.debounceMs === 70, 'didChangeConfiguration: applied without a restart', status?.settings?.debounceMs);

// A machine-level setting changed in the user settings: the server restarts with it in
// initializationOptions; it never travels as didChangeConfiguration.
const initsBefore = sent('initialize').length;
const changesBefore = sent('workspace/didChangeConfiguration').length;
userSettings['fimls.allowInsecureHttp'] = true;
configChanged.fire({ affectsConfiguration: (section) => section === 'fimls' || section === 'fimls.allowInsecureHttp' });
for (let i = 0; i < 50 && sent('initialize').length === initsBefore; i += 1) {
  await new Promise((resolve) => setTimeout(resolve, 100));
}
for (let i = 0; i < 50; i += 1) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  await commands.get('fimls.showStatus')();
  status = lastStatus();
  if (status?.settings?.allowInsecureHttp === true) break;
}
const restartInit = sent('initialize').at(-1)?.initializationOptions ?? {};
check(sent('initialize').length === initsBefore + 1 && restartInit.allowInsecureHttp === true,
  'machine-level change: server restarted with it in initializationOptions', restartInit);
check(status?.settings?.allowInsecureHttp === true, 'machine-level change: applied by the new server', status?.settings);
changes = sent('workspace/didChangeConfiguration').slice(changesBefore);
check(changes.every((p) => leaked(p?.settings?.fimls).length === 0),
  'machine-level change: not sent as didChangeConfiguration', changes);

// ("not running" answers come from polling Show Status while the server restarts.)
const warnings = messages.filter(([level, text]) => level !== 'info' && !text.includes('is not running'));
check(warnings.length === 0, 'no warning/error popups (no unknown settings reported)', warnings);
check(logLines.some((l) => l.includes('initialized for Visual Studio Code')),
  'server stderr (fimls -v, from fimls.serverArgs) reaches the output channel', logLines.slice(0, 5));

await extension.deactivate();
clearTimeout(watchdog);
console.log(JSON.stringify({ failures, commands: [...commands.keys()] }));
if (failures > 0) console.log(logLines.join('\n'));
process.exit(failures > 0 ? 1 : 0);
