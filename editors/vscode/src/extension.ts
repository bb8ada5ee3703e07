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
  'apiKey',
  'baseUrl',
  'model',
  'maxTokens',
  'maxTokensSingleLine',
  'temperature',
  'topP',
  'stream',
  'debounceMs',
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
] as const;

/**
 * Settings that decide which program runs, where code and the key are sent, or which
 * command prints the key. They are machine-scoped in package.json and read from the user
 * settings only, so a workspace's .vscode/settings.json cannot redirect them.
 */
const USER_ONLY = new Set(['serverPath', 'serverArgs', 'apiKey', 'apiKeyCommand', 'baseUrl', 'allowInsecureHttp']);

/** Client-side settings whose change needs a new server process. */
const RESTART_OPTIONS = ['serverPath', 'serverArgs'];

let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel | undefined;

/** The value the user set explicitly for `fimls.<key>`, or undefined. */
function explicitValue<T>(key: string): T | undefined {
  const info = vscode.workspace.getConfiguration(SECTION).inspect<T>(key);
  if (USER_ONLY.has(key)) {
    return info?.globalValue;
  }
  return info?.workspaceFolderValue ?? info?.workspaceValue ?? info?.globalValue;
}

/**
 * The server settings: only the options the user set explicitly (user, workspace or
 * folder level), so the server's own defaults and its environment fallbacks
 * (DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL) apply to everything else.
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

/** Keys sent as initializationOptions when the running server started. */
let startupKeys: string[] = [];

/**
 * Sends the current settings as workspace/didChangeConfiguration. The server applies
 * them on top of its initializationOptions, so a setting that was sent at startup and
 * has been removed since can only be reset by starting the server again.
 */
async function sendSettings(): Promise<void> {
  const settings = serverSettings();
  if (startupKeys.some((key) => !(key in settings))) {
    await restartClient();
    return;
  }
  await client?.sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settings } });
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
      const settings = serverSettings();
      startupKeys = Object.keys(settings);
      return settings;
    },
    // Re-sends the settings whenever something under `fimls.*` changes ...
    synchronize: { configurationSection: SECTION },
    middleware: {
      workspace: {
        // ... but only the server's own options: serverPath, serverArgs, completionMenu
        // and trace.server are client-side and would be reported as unknown settings.
        didChangeConfiguration: () => sendSettings(),
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
        'Install it (pipx install fimls) or set "fimls.serverPath".',
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
