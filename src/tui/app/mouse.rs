//! Mouse: clicks select rows, fields and hex bytes; the wheel scrolls.

use super::*;

impl App {
    // ------------------------------------------------------------------
    // Mouse

    pub fn handle_mouse(&mut self, mouse: MouseEvent) {
        let at = Position::new(mouse.column, mouse.row);
        let areas = self.areas;
        let step = match mouse.kind {
            MouseEventKind::ScrollUp => -WHEEL_STEP,
            MouseEventKind::ScrollDown => WHEEL_STEP,
            MouseEventKind::Down(MouseButton::Left) => 0,
            _ => return,
        };
        let inner_row = |area: Rect, skip: u16| -> Option<usize> {
            (area.contains(at) && at.y >= area.y + skip).then(|| usize::from(at.y - area.y - skip))
        };
        match self.view {
            View::Help => {}
            View::Realms => {
                if step != 0 {
                    if areas.realms.contains(at) {
                        self.move_by(step);
                    }
                } else if let Some(row) = inner_row(areas.realms, 2) {
                    let row = row + self.realm_offset;
                    if row < self.model.realm_count() {
                        self.realm_cursor = row;
                    }
                }
            }
            View::Packets => {
                if areas.list.contains(at) {
                    self.focus = Focus::List;
                    if step != 0 {
                        self.move_list(step);
                    } else if let Some(row) = inner_row(areas.list, 2) {
                        let row = row + self.list_offset;
                        if row < self.shown.len() {
                            self.pause();
                            self.select_row(row);
                        }
                    }
                } else if areas.tree.contains(at) {
                    self.focus = Focus::Tree;
                    if step != 0 {
                        let row = self.tree_cursor_row().saturating_add_signed(step);
                        self.set_tree_row(row);
                    } else if let Some(row) = inner_row(areas.tree, 1) {
                        self.set_tree_row(row + self.tree_offset);
                    }
                } else if areas.hex.contains(at) {
                    self.focus = Focus::Hex;
                    if step != 0 {
                        self.hex_offset = self.hex_offset.saturating_add_signed(step);
                    } else if let Some(line) = inner_row(areas.hex, 1) {
                        let width = areas.hex_width.max(1);
                        let column = usize::from(at.x - areas.hex.x);
                        let byte = if (6..6 + 3 * width).contains(&column) {
                            Some((column - 6) / 3)
                        } else {
                            column.checked_sub(7 + 3 * width).filter(|&b| b < width)
                        };
                        if let Some(byte) = byte {
                            self.set_hex_cursor((line + self.hex_offset) * width + byte);
                        }
                    }
                }
            }
        }
    }
}
