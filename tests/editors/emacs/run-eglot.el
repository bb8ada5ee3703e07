;;; run-eglot.el --- drive Eglot + fimls in `emacs --batch' for test_emacs.py  -*- lexical-binding: t; -*-

;; Environment (set by tests/editors/test_emacs.py):
;;   FIMLS_EL        editors/emacs/fimls.el, loaded unchanged
;;   FIMLS_TEST_DIR  an empty directory used as the project
;;   FIMLS_RESULT    where to write the results (JSON, UTF-8)
;;   FIMLS_DIR_LOCALS  when set, the project's own .dir-locals.el supplies
;;                   `eglot-workspace-configuration' (as in a cloned repository)
;; `fimls' must be on PATH (the test puts a wrapper there); DEEPSEEK_* point at a fake.
;;
;; Each step records what the buffer looks like after `completion-at-point', so the
;; Python side can assert on it.  Any error is recorded and makes Emacs exit 1.

(require 'package)
(unless (require 'eglot nil t)
  ;; Emacs 28 + Debian's elpa-eglot: `-Q' skips site-start, so find it by hand.
  (setq package-directory-list '("/usr/share/emacs/site-lisp/elpa"))
  (package-initialize)
  (require 'eglot))
(require 'json)
(require 'python)

(defvar fimls-test--results nil)
(defun fimls-test--record (key value)
  (push (cons key value) fimls-test--results))

(defun fimls-test--write ()
  (let ((coding-system-for-write 'utf-8)
        (json-encoding-pretty-print nil))
    (with-temp-file (getenv "FIMLS_RESULT")
      (insert (json-encode (nreverse fimls-test--results))))))

(defun fimls-test--line (n)
  "Text of line N (0-based) of the current buffer."
  (save-excursion
    (goto-char (point-min))
    (forward-line n)
    (buffer-substring-no-properties (line-beginning-position) (line-end-position))))

(defun fimls-test--complete-at (n)
  "Put point at the end of line N (0-based) and run `completion-at-point'."
  (goto-char (point-min))
  (forward-line n)
  (end-of-line)
  (completion-at-point))

(let* ((dir (file-name-as-directory (getenv "FIMLS_TEST_DIR")))
       (started (float-time))
       (exit-code 0))
  (condition-case err
      (progn
        (load (getenv "FIMLS_EL") nil t)
        (let ((entry (car eglot-server-programs)))
          (fimls-test--record "entry_modes" (format "%S" (car entry)))
          (fimls-test--record "entry_program" (format "%S" (cdr entry))))
        (setq eglot-sync-connect 10
              eglot-autoshutdown t
              eglot-send-changes-idle-time 0.1)
        ;; Per-project settings, as a .dir-locals.el would set them (or the real file).
        (unless (getenv "FIMLS_DIR_LOCALS")
          (setq-default eglot-workspace-configuration '(:fimls (:debounceMs 100))))
        ;; No VCS here: a transient project, so Eglot doesn't prompt.
        (add-hook 'project-find-functions (lambda (_dir) (cons 'transient dir)))
        (find-file (expand-file-name "example.py" dir))
        (insert "# fimls eglot test: é😀 and 中文 before the cursor\n"
                "def total(xs):\n"
                "    \n"
                "s = \"é😀中\"; print()\n"
                "label = \n")
        (python-mode)
        ;; What Emacs applied, without asking, from a .dir-locals.el.
        (fimls-test--record "workspace_configuration" (format "%S" eglot-workspace-configuration))
        (apply #'eglot (eglot--guess-contact))
        (let ((server (eglot-current-server)))
          (unless server (error "Eglot did not connect"))
          (fimls-test--record "connected_s" (- (float-time) started))
          (fimls-test--record "capf" (format "%S" completion-at-point-functions))

          ;; 1. Typed after non-ASCII text: Eglot sends incremental changes and the
          ;;    completion position in UTF-16 (1.9) or UTF-32 (29+) columns.
          (goto-char (point-min))
          (search-forward "print(")
          (insert "f")
          (insert "o")
          (fimls-test--record "lsp_position" (format "%S" (eglot--pos-to-lsp-position)))
          (completion-at-point)
          (fimls-test--record "call_line" (fimls-test--line 3))
          (fimls-test--record "call_point_at" (buffer-substring-no-properties
                                               (line-beginning-position) (point)))

          ;; 2. A multi-line block on an indented empty line.
          (fimls-test--complete-at 2)
          (fimls-test--record "block" (buffer-substring-no-properties
                                       (save-excursion (goto-char (point-min))
                                                       (forward-line 1) (point))
                                       (save-excursion (goto-char (point-min))
                                                       (forward-line 5) (point))))

          ;; 3. "$" and "}" must arrive as plain text (no yasnippet here).
          (goto-char (point-min))
          (search-forward "label = ")
          (completion-at-point)
          (fimls-test--record "plain_line" (buffer-substring-no-properties
                                            (line-beginning-position) (line-end-position)))

          (fimls-test--record
           "status"
           (jsonrpc-request server :workspace/executeCommand
                            '(:command "fimls.status" :arguments [])))
          (fimls-test--record "whole_buffer" (buffer-substring-no-properties
                                              (point-min) (point-max)))
          (set-buffer-modified-p nil)
          (fimls-test--record "total_s" (- (float-time) started))
          (eglot-shutdown server)))
    (error
     (fimls-test--record "error" (error-message-string err))
     (setq exit-code 1)))
  (fimls-test--write)
  (kill-emacs exit-code))

;;; run-eglot.el ends here
