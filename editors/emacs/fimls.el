;;; fimls.el --- fimls (DeepSeek FIM completion) with Eglot  -*- lexical-binding: t; -*-

;; Emacs 29+ (Eglot is built in), or Emacs 28 with Eglot 1.9+ from GNU ELPA
;; (Debian/Ubuntu: apt install elpa-eglot).  Paste this into your init file or
;; (load "/path/to/fimls/editors/emacs/fimls.el").  Then M-x eglot in a Python
;; buffer, or (add-hook 'python-mode-hook #'eglot-ensure).
;;
;; The API key comes from the environment: export DEEPSEEK_API_KEY=sk-...
;; (an Emacs started from a desktop launcher may need
;; (setenv "DEEPSEEK_API_KEY" "sk-...") instead).
;;
;; Eglot has no inline (ghost text) completion: the suggestion arrives through
;; completion-at-point (C-M-i, or company/corfu).  Its label is the first line
;; of the suggestion (" …" marks more lines); accepting it inserts all of it.

(with-eval-after-load 'eglot
  (add-to-list 'eglot-server-programs
               '((python-mode python-ts-mode)
                 . ("fimls" "--stdio"
                    ;; Any fimls option, camelCase (see the README).  debounceMs is
                    ;; the longest wait after a keystroke (fimls often asks sooner).
                    ;; A local model: :backend "ollama" (README: Backends).
                    :initializationOptions (:debounceMs 150
                                            :multiline "auto"
                                            :maxTokens 256)))))

(defun fimls-status ()
  "Show what the fimls server of this buffer reports (model, key, cache, usage)."
  (interactive)
  (let ((server (or (eglot-current-server)
                    (user-error "No Eglot server in this buffer"))))
    (pp-display-expression
     (jsonrpc-request server :workspace/executeCommand
                      '(:command "fimls.status" :arguments []))
     "*fimls status*")))

;; Per project, settings can also come from .dir-locals.el (sent as
;; workspace/didChangeConfiguration):
;;   ((nil . ((eglot-workspace-configuration . (:fimls (:debounceMs 300))))))
;; Emacs applies that variable from any repository's .dir-locals.el without
;; asking, so fimls ignores there (with a warning) the settings that decide
;; where code and keys go: backend, baseUrl, apiKey, apiKeyCommand, apiKeyEnv,
;; allowInsecureHttp.  Set those in :initializationOptions above, in the
;; environment, or in ~/.config/fimls/config.json.
;;
;; Eglot runs ONE server per buffer, and the entry above comes first in
;; `eglot-server-programs', so fimls replaces pylsp/pyright there.  To keep
;; your usual server as well:
;;
;; 1. A multiplexer that looks like one server to Eglot and merges the
;;    completion lists, e.g. rassumfrassum by Eglot's author
;;    (pip install rassumfrassum); its `rass' key routes options per server:
;;      (add-to-list 'eglot-server-programs
;;                   '((python-mode python-ts-mode)
;;                     . ("rass" "--" "pylsp" "--" "fimls" "--stdio"
;;                        :initializationOptions
;;                        (:rass (:fimls (:debounceMs 150))))))
;;    Completion then waits for the slower server, i.e. for DeepSeek.
;;
;; 2. lsp-mode instead of Eglot: it starts "add-on" servers next to the main
;;    one, and lsp-inline-completion-mode (lsp-mode 10+) shows ghost text:
;;      (with-eval-after-load 'lsp-mode
;;        (lsp-register-client
;;         (make-lsp-client
;;          :new-connection (lsp-stdio-connection '("fimls" "--stdio"))
;;          :activation-fn (lsp-activate-on "python")
;;          :server-id 'fimls
;;          :add-on? t
;;          :initialization-options '(:debounceMs 150))))
;;
;; 3. fimls alone, for modes that have no other server, or started by hand
;;    for one project: C-u M-x eglot RET fimls --stdio RET.
;;
;; Logs: M-x eglot-events-buffer (buffer "*EGLOT (PROJECT/(MODES)) events*")
;; shows the JSON-RPC traffic; recent Eglot puts the server's stderr there too,
;; Eglot 1.9 in "*EGLOT (PROJECT/(MODES)) stderr*" (M-x eglot-stderr-buffer).
;; For more detail start the server as "fimls" "-v" "--stdio" (or "-vv").

;;; fimls.el ends here
