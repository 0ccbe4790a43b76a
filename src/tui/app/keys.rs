//! Keys: moving, filtering, prompts and the actions they submit.

use super::*;

impl App {
    // ------------------------------------------------------------------
    // Keys

    pub fn handle_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            self.quit = true;
            return;
        }
        if self.prompt.is_some() {
            self.prompt_key(key);
            return;
        }
        self.note = None;
        if self.view == View::Help {
            if matches!(
                key.code,
                KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Enter
            ) {
                self.view = self.view_before_help;
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.view_before_help = self.view;
                self.view = View::Help;
            }
            KeyCode::Char('/') => {
                self.prompt = Some(Prompt {
                    kind: PromptKind::Filter,
                    text: self.filter_text.clone(),
                })
            }
            KeyCode::Char('r') => {
                self.view = if self.view == View::Realms {
                    View::Packets
                } else {
                    View::Realms
                }
            }
            KeyCode::Char('w') => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                self.prompt = Some(Prompt {
                    kind: PromptKind::WritePcap,
                    text: format!("dhp2p-inspect-{secs}.pcap"),
                })
            }
            KeyCode::Char('e') => match self.export_target() {
                Some((_, realm)) => {
                    self.prompt = Some(Prompt {
                        kind: PromptKind::ExportRealm,
                        text: format!("realm-{realm:08x}"),
                    })
                }
                None => self.say_error("no realm here: select a PTCP packet with a realm, or one in the realms view (r)"),
            },
            KeyCode::Char('F') | KeyCode::Char('G') | KeyCode::End => self.resume_follow(),
            KeyCode::Char('g') | KeyCode::Home => self.go_first(),
            KeyCode::Tab => self.cycle_focus(true),
            KeyCode::BackTab => self.cycle_focus(false),
            KeyCode::Esc => {}
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-self.page()),
            KeyCode::PageDown => self.move_by(self.page()),
            KeyCode::Left | KeyCode::Char('h') => self.left(),
            KeyCode::Right | KeyCode::Char('l') => self.right(),
            KeyCode::Enter | KeyCode::Char(' ') => self.toggle(),
            KeyCode::Char('E') => {
                self.collapsed.clear();
                self.refresh_rows();
            }
            KeyCode::Char('C') => self.collapse_all(),
            _ => {}
        }
    }

    pub(super) fn prompt_key(&mut self, key: KeyEvent) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Enter => {
                let prompt = prompt.clone();
                self.submit(prompt);
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Char('u') if ctrl => prompt.text.clear(),
            KeyCode::Char(c) if !ctrl => prompt.text.push(c),
            _ => {}
        }
    }

    pub(super) fn submit(&mut self, prompt: Prompt) {
        match prompt.kind {
            PromptKind::Filter => match Filter::parse(&prompt.text) {
                Ok(filter) => {
                    self.prompt = None;
                    self.set_filter(filter, prompt.text.trim().to_owned());
                }
                // Keep the prompt open so the term can be fixed.
                Err(e) => self.say_error(&e.to_string()),
            },
            PromptKind::WritePcap => {
                self.prompt = None;
                let path = prompt.text.trim().to_owned();
                match self.shown_pcap() {
                    Ok(pcap) => {
                        let mut done = format!("wrote {} packets to {path}", pcap.written);
                        if pcap.skipped > 0 {
                            done.push_str(&format!(" ({} IPv6 skipped)", pcap.skipped));
                        }
                        self.outputs.push(Output {
                            failed: format!("cannot write {path}"),
                            files: vec![OutputFile {
                                path,
                                bytes: pcap.bytes,
                            }],
                            done,
                        });
                    }
                    Err(e) => self.say_error(&format!("cannot write {path}: {e}")),
                }
            }
            PromptKind::ExportRealm => {
                self.prompt = None;
                let base = prompt.text.trim().to_owned();
                match self.export_realm(&base) {
                    Some(export) => {
                        let mut done = format!(
                            "realm 0x{:08x}: {} bytes to device in {}, {} bytes from device in {}",
                            export.realm,
                            export.to_device.bytes.len(),
                            export.to_device.path,
                            export.from_device.bytes.len(),
                            export.from_device.path
                        );
                        if export.gaps > 0 {
                            done.push_str(&format!(" ({} gaps)", export.gaps));
                        }
                        self.outputs.push(Output {
                            files: vec![export.to_device, export.from_device],
                            done,
                            failed: "cannot export".to_owned(),
                        });
                    }
                    None => self.say_error("cannot export: no realm selected"),
                }
            }
        }
    }

    pub(super) fn say(&mut self, text: &str) {
        self.note = Some(Note {
            text: text.to_owned(),
            error: false,
        });
    }

    pub(super) fn say_error(&mut self, text: &str) {
        self.note = Some(Note {
            text: text.to_owned(),
            error: true,
        });
    }

    /// Applies a filter: the shown list is rebuilt from the retained packets.
    pub fn set_filter(&mut self, filter: Filter, text: String) {
        self.filter = filter;
        self.filter_text = text;
        self.shown = self
            .packets
            .iter()
            .filter(|p| self.filter.matches(&p.subject()))
            .map(|p| p.seq)
            .collect();
        self.list_offset = 0;
        self.fix_selection();
        self.detail = None;
    }

    pub(super) fn page(&self) -> isize {
        let area = match (self.view, self.focus) {
            (View::Realms, _) => self.areas.realms,
            (_, Focus::List) => self.areas.list,
            (_, Focus::Tree) => self.areas.tree,
            (_, Focus::Hex) => self.areas.hex,
        };
        isize::try_from(area.height.saturating_sub(2).max(1)).unwrap_or(1)
    }

    pub(super) fn cycle_focus(&mut self, forward: bool) {
        self.focus = match (self.focus, forward) {
            (Focus::List, true) | (Focus::Hex, false) => Focus::Tree,
            (Focus::Tree, true) | (Focus::List, false) => Focus::Hex,
            (Focus::Hex, true) | (Focus::Tree, false) => Focus::List,
        };
        if self.focus == Focus::Hex && self.hex_cursor.is_none() {
            self.hex_cursor = self.highlighted_range().map(|r| r.start).or(Some(0));
        }
    }

    /// Follow mode again, like `F` in `less`: select the newest packet.
    pub fn resume_follow(&mut self) {
        self.follow = true;
        self.new_while_paused = 0;
        self.fix_selection();
    }

    pub(super) fn pause(&mut self) {
        if self.follow {
            self.follow = false;
            self.new_while_paused = 0;
        }
    }

    pub(super) fn go_first(&mut self) {
        match self.view {
            View::Realms => self.realm_cursor = 0,
            _ => match self.focus {
                Focus::List => {
                    self.pause();
                    self.select_row(0);
                }
                Focus::Tree => self.set_tree_row(0),
                Focus::Hex => self.set_hex_cursor(0),
            },
        }
    }

    pub(super) fn move_by(&mut self, delta: isize) {
        match self.view {
            View::Realms => {
                let last = self.model.realm_count().saturating_sub(1);
                self.realm_cursor = self.realm_cursor.saturating_add_signed(delta).min(last);
            }
            _ => match self.focus {
                Focus::List => self.move_list(delta),
                Focus::Tree => {
                    let row = self.tree_cursor_row().saturating_add_signed(delta);
                    self.set_tree_row(row);
                }
                Focus::Hex => {
                    let width = self.areas.hex_width.max(1) as isize;
                    let at = self.hex_cursor.unwrap_or(0);
                    self.set_hex_cursor(at.saturating_add_signed(delta * width));
                }
            },
        }
    }

    /// Moves the list selection; any move pauses following.
    pub(super) fn move_list(&mut self, delta: isize) {
        if self.shown.is_empty() {
            return;
        }
        let row = self.selected_row().unwrap_or(self.shown.len() - 1);
        let target = row.saturating_add_signed(delta).min(self.shown.len() - 1);
        if target != row || delta < 0 {
            self.pause();
        }
        self.select_row(target);
    }

    pub(super) fn select_row(&mut self, row: usize) {
        if let Some(&seq) = self.shown.get(row) {
            self.selected = Some(seq);
        }
    }

    pub(super) fn set_tree_row(&mut self, row: usize) {
        let Some(detail) = self.detail() else { return };
        let Some(last) = detail.rows.len().checked_sub(1) else {
            return;
        };
        let path = detail.rows[row.min(last)].path.clone();
        self.tree_cursor = path;
        if self.focus != Focus::Hex {
            self.hex_cursor = None;
        }
    }

    pub(super) fn set_hex_cursor(&mut self, offset: usize) {
        let Some(detail) = self.detail() else { return };
        let Some(last) = detail.bytes.len().checked_sub(1) else {
            return;
        };
        let offset = offset.min(last);
        let path = path_at(&detail.description.fields, offset);
        self.hex_cursor = Some(offset);
        if let Some(path) = path {
            // Open the field's ancestors so the tree can show it.
            for depth in 1..path.len() {
                self.collapsed.remove(&path[..depth]);
            }
            self.tree_cursor = path;
            self.refresh_rows();
        }
    }

    pub(super) fn left(&mut self) {
        match (self.view, self.focus) {
            (View::Packets, Focus::Tree) => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children && r.expanded {
                    self.collapsed.insert(r.path);
                    self.refresh_rows();
                } else if r.path.len() > 1 {
                    self.tree_cursor = r.path[..r.path.len() - 1].to_vec();
                }
            }
            (View::Packets, Focus::Hex) => {
                let at = self.hex_cursor.unwrap_or(0);
                self.set_hex_cursor(at.saturating_sub(1));
            }
            _ => {}
        }
    }

    pub(super) fn right(&mut self) {
        match (self.view, self.focus) {
            (View::Packets, Focus::Tree) => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children && !r.expanded {
                    self.collapsed.remove(&r.path);
                    self.refresh_rows();
                } else {
                    self.set_tree_row(row + 1);
                }
            }
            (View::Packets, Focus::Hex) => {
                let at = self.hex_cursor.map_or(0, |c| c + 1);
                self.set_hex_cursor(at);
            }
            _ => {}
        }
    }

    /// Enter/Space: expand or collapse the field under the cursor; on the
    /// list, move the focus to the tree.
    pub(super) fn toggle(&mut self) {
        if self.view != View::Packets {
            return;
        }
        match self.focus {
            Focus::List => self.focus = Focus::Tree,
            Focus::Tree => {
                let row = self.tree_cursor_row();
                let Some(r) = self.detail().and_then(|d| d.rows.get(row)).cloned() else {
                    return;
                };
                if r.has_children {
                    if r.expanded {
                        self.collapsed.insert(r.path);
                    } else {
                        self.collapsed.remove(&r.path);
                    }
                    self.refresh_rows();
                }
            }
            Focus::Hex => {}
        }
    }

    /// Collapses every field below the roots.
    pub(super) fn collapse_all(&mut self) {
        let Some(detail) = self.detail() else { return };
        let paths: Vec<FieldPath> = detail
            .rows
            .iter()
            .filter(|r| r.has_children && r.depth >= 1)
            .map(|r| r.path.clone())
            .collect();
        self.collapsed.extend(paths);
        self.tree_cursor.truncate(1);
        self.refresh_rows();
    }
}
