// VS Code client for the fimls language server (DeepSeek FIM completion).
//
// vscode-languageclient 10+ (this extension pins 11.0.0) registers the LSP 3.18
// `textDocument/inlineCompletion` feature by default, so ghost text needs no extra code.
// With vscode-languageclient 9.x the feature is still "proposed": you would have to call
// `client.registerProposedFeatures()` before `client.start()`.

import * as os from 'os';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  TransportKind,
} from 'vscode-languageclient/node';

const SECTION = 'fimls';

/** Options understood by the server (initializationOptions / didChangeConfiguration). */
export const SERVER_OPTIONS = [
  'backend',
  'apiKey',
  'apiKeyEnv',
  'baseUrl',
  'model',
  'maxTokens',
  'maxTokensSingleLine',
  'temperature',
  'topP',
  'stream',
  'debounceMs',
  'adaptiveDebounce',
  'earlyAnswer',
  'earlyAnswerMs',
  'prefetch',
  'timeoutMs',
  'maxPrefixChars',
  'maxSuffixChars',
  'promptAnchorLines',
  'multiline',
  'numSuggestions',
  'cacheSize',
  'cacheTtlSeconds',
  'maxRetries',
  'apiKeyCommand',
  'languages',
  'allowInsecureHttp',
  'template',
  'templateStop',
  'pricePerMillionTokens',
  'routingId',
  'contextOpenFiles',
  'contextRecentEdits',
  'contextImports',
  'contextBudgetChars',
] as const;

/**
 * Machine-level settings: which program runs, where code and the key go, and which command
 * prints the key. They are machine-scoped in package.json and read from the user settings
 * only (inspect().globalValue), so a workspace's .vscode/settings.json can never set them.
 * The server options among them travel only as initializationOptions (the server ignores
 * them in workspace configuration), so changing one restarts the server.
 */
export const MACHINE_LEVEL: ReadonlySet<string> = new Set([
  'serverPath',
  'serverArgs',
  'backend',
  'baseUrl',
  'apiKey',
  'apiKeyCommand',
  'apiKeyEnv',
  'allowInsecureHttp',
]);

/** Client-side settings whose change needs a new server process. */
const RESTART_OPTIONS = ['serverPath', 'serverArgs'];

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel | undefined;

/**
 * The value the user set explicitly for `fimls.<key>`, or undefined. Machine-level settings
 * come from the user settings alone, whatever a workspace or folder says.
 */
export function explicitValue<T>(key: string): T | undefined {
  const info = vscode.workspace.getConfiguration(SECTION).inspect<T>(key);
  if (MACHINE_LEVEL.has(key)) {
    return info?.globalValue;
  }
  return info?.workspaceFolderValue ?? info?.workspaceValue ?? info?.globalValue;
}

/**
 * The server settings sent as initializationOptions: only the options the user set
 * explicitly, so the server's own defaults and its environment fallbacks
 * (DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL, ...) apply to everything else.
 */
export function serverSettings(): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of SERVER_OPTIONS) {
    const value = explicitValue<unknown>(key);
    if (value !== undefined && value !== null && value !== '') {
      settings[key] = value;
    }
  }
  return settings;
}

/** The settings that may travel as workspace configuration: all but the machine-level ones. */
export function workspaceSettings(settings: Record<string, unknown> = serverSettings()): Record<string, unknown> {
  return Object.fromEntries(Object.entries(settings).filter(([key]) => !MACHINE_LEVEL.has(key)));
}

/**
 * The answer to one item of a workspace/configuration request: for the `fimls` section (or
 * one of its keys, or the whole configuration) the same settings didChangeConfiguration
 * carries, never a machine-level one; other sections as VS Code answered them.
 */
export function configurationAnswer(section: string | undefined, answer: unknown): unknown {
  const settings = workspaceSettings();
  if (section === SECTION) {
    return settings;
  }
  if (section !== undefined && section.startsWith(`${SECTION}.`)) {
    return settings[section.slice(SECTION.length + 1)] ?? null;
  }
  if ((section === undefined || section === '') && answer !== null && typeof answer === 'object') {
    return { ...(answer as Record<string, unknown>), [SECTION]: settings };
  }
  return answer;
}

/** The settings sent as initializationOptions when the running server started. */
let startupSettings: Record<string, unknown> = {};

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Sends the current settings as workspace/didChangeConfiguration. The server applies them
 * on top of its initializationOptions, so a setting that was sent at start-up and has been
 * removed since, or a changed machine-level setting (accepted only at start-up), needs a
 * new server.
 */
async function sendSettings(): Promise<void> {
  const settings = serverSettings();
  const removed = Object.keys(startupSettings).some((key) => !(key in settings));
  const machineChanged = SERVER_OPTIONS.some(
    (key) => MACHINE_LEVEL.has(key) && !sameValue(settings[key], startupSettings[key]),
  );
  if (removed || machineChanged) {
    await restartClient();
    return;
  }
  await client?.sendNotification(DidChangeConfigurationNotification.type, {
    settings: { [SECTION]: workspaceSettings(settings) },
  });
}

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? os.homedir() + path.slice(1) : path;
}

function createClient(): LanguageClient {
  const command = expandHome(explicitValue<string>('serverPath') || 'fimls');
  const args = explicitValue<string[]>('serverArgs') ?? [];
  const serverOptions: ServerOptions = {
    run: { command, args, transport: TransportKind.stdio },
    debug: { command, args: [...args, '-vv'], transport: TransportKind.stdio },
  };
  const clientOptions: LanguageClientOptions = {
    // Every file and unsaved buffer: FIM completion is language-agnostic.
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    outputChannel: output,
    initializationOptions: () => {
      startupSettings = serverSettings();
      return startupSettings;
    },
    // Re-sends the settings whenever something under `fimls.*` changes ...
    synchronize: { configurationSection: SECTION },
    middleware: {
      workspace: {
        // ... but only the server's own options: serverPath, serverArgs, completionMenu
        // and trace.server are client-side and would be reported as unknown settings.
        didChangeConfiguration: () => sendSettings(),
        // A server asking for its settings gets the same filtered view.
        configuration: async (params, token, next) => {
          const answers = await next(params, token);
          if (!Array.isArray(answers)) {
            return answers;
          }
          return params.items.map((item, index) => configurationAnswer(item.section, answers[index]));
        },
      },
      // Ghost text is the primary UI in VS Code. The classic completion menu entry is
      // opt-in (fimls.completionMenu); when it is off no request reaches the server.
      provideCompletionItem: (document, position, context, token, next) =>
        vscode.workspace.getConfiguration(SECTION, document).get<boolean>('completionMenu', false)
          ? next(document, position, context, token)
          : undefined,
    },
  };
  return new LanguageClient('fimls', 'fimls', serverOptions, clientOptions);
}

async function startClient(): Promise<void> {
  client = createClient();
  try {
    await client.start();
  } catch (error) {
    const command = explicitValue<string>('serverPath') || 'fimls';
    const choice = await vscode.window.showErrorMessage(
      `fimls: could not start the language server "${command}" (${String(error)}). ` +
        'Install fimls and put it on PATH, or set "fimls.serverPath" (user settings).',
      'Open Settings',
    );
    if (choice === 'Open Settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'fimls.serverPath');
    }
  }
}

async function stopClient(): Promise<void> {
  const running = client;
  client = undefined;
  if (running !== undefined) {
    await running.stop().catch(() => undefined);
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  await startClient();
}

/** Runs one of the server's workspace commands and shows the answer. */
async function showServerCommand(command: string, title: string): Promise<void> {
  if (client === undefined || !client.isRunning()) {
    void vscode.window.showWarningMessage('fimls: the language server is not running.');
    return;
  }
  try {
    const result = await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [] });
    output?.info(`${title}: ${JSON.stringify(result, null, 2)}`);
    const text =
      result && typeof result === 'object' && typeof (result as { text?: unknown }).text === 'string'
        ? (result as { text: string }).text
        : JSON.stringify(result);
    const choice = await vscode.window.showInformationMessage(`fimls ${title}: ${text}`, 'Show Output');
    if (choice === 'Show Output') {
      output?.show(true);
    }
  } catch (error) {
    void vscode.window.showErrorMessage(`fimls ${title} failed: ${String(error)}`);
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('fimls', { log: true });
  context.subscriptions.push(
    output,
    // Not "fimls.status": the language client registers the server's own commands
    // (fimls.status, fimls.balance, fimls.models) under their names already.
    vscode.commands.registerCommand('fimls.showStatus', () => showServerCommand('fimls.status', 'status')),
    vscode.commands.registerCommand('fimls.showBalance', () => showServerCommand('fimls.balance', 'balance')),
    vscode.commands.registerCommand('fimls.restartServer', restartClient),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (RESTART_OPTIONS.some((key) => event.affectsConfiguration(`${SECTION}.${key}`))) {
        await restartClient();
      }
    }),
    { dispose: () => void stopClient() },
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
