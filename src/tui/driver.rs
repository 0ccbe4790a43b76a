//! The thin terminal driver: raw mode, the alternate screen and mouse
//! capture on the way in, all restored on the way out (also from a panic),
//! and one loop that moves input events and source records into the
//! [`App`] and redraws at most [`FRAME_INTERVAL`] apart.

use std::io::{self, Stdout, Write};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use super::app::{App, SourceState};
use super::ui;
use super::SourceEvent;

/// Shortest time between two redraws (about 30 frames a second), so a
/// source sending thousands of packets a second does not make it flicker.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// Records taken from the source between two looks at the keyboard, so a
/// fast source never makes keys wait.
const RECORDS_PER_TURN: usize = 5_000;

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        LeaveAlternateScreen,
        DisableMouseCapture,
        crossterm::cursor::Show
    );
}

/// Runs the inspector on the real terminal until the user quits.
pub fn run(mut app: App, source: Receiver<SourceEvent>) -> io::Result<()> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Restore first, or the panic message is lost in raw mode.
        restore_terminal();
        previous_hook(info);
    }));
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
        restore_terminal();
        return Err(e);
    }
    let result = Terminal::new(CrosstermBackend::new(io::stdout()))
        .and_then(|mut terminal| event_loop(&mut terminal, &mut app, &source));
    restore_terminal();
    let _ = io::stdout().flush();
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    source: &Receiver<SourceEvent>,
) -> io::Result<()> {
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME_INTERVAL;
    let mut source_open = true;
    loop {
        if dirty && last_draw.elapsed() >= FRAME_INTERVAL {
            terminal.draw(|frame| ui::render(frame, app))?;
            last_draw = Instant::now();
            dirty = false;
        }
        // Sleep until input, the next allowed frame, or a moment to look at
        // the source again.
        let wait = if dirty {
            FRAME_INTERVAL.saturating_sub(last_draw.elapsed())
        } else {
            Duration::from_millis(10)
        };
        if event::poll(wait)? {
            // Take every pending event before drawing again.
            loop {
                match event::read()? {
                    Event::Key(key) => {
                        app.handle_key(key);
                        write_outputs(app);
                    }
                    Event::Mouse(mouse) => app.handle_mouse(mouse),
                    Event::Resize(..) => terminal.autoresize()?,
                    _ => {}
                }
                dirty = true;
                if app.should_quit() {
                    return Ok(());
                }
                if !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        if source_open {
            for _ in 0..RECORDS_PER_TURN {
                match source.try_recv() {
                    Ok(SourceEvent::Record(record)) => app.push(record),
                    Ok(SourceEvent::State(state)) => app.set_source_state(state),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        source_open = false;
                        if matches!(
                            app.source_state(),
                            SourceState::Live | SourceState::Connecting
                        ) {
                            app.set_source_state(SourceState::Ended);
                        }
                        break;
                    }
                }
                dirty = true;
            }
        }
    }
}

/// Writes the files the app asked for (`w`, `e`) and tells it how that
/// went: the only file I/O of the inspector, kept out of the app state.
pub fn write_outputs(app: &mut App) {
    for output in app.take_outputs() {
        let result = output
            .files
            .iter()
            .try_for_each(|file| std::fs::write(&file.path, &file.bytes));
        app.output_written(&output, result);
    }
}
