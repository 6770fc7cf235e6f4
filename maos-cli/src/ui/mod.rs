//! `maos ui`: a full-screen terminal dashboard of the workspace — agents, tasks, locks and
//! reservations, messages, merges — one pane at a time, switched by key, kept live.
//!
//! Live without busy work: a notify watch on the workspace's folders marks the view stale
//! when a record changes (every channel's folder watched as an inbox watches them), the key
//! loop waits on the terminal for a quarter of a second at a time, and the state is read again
//! only when something changed — no sooner after the last read than a few times what that
//! read cost — or every few seconds, for ages and expiries. When stdout is not a terminal it
//! prints every pane once as plain text; `NO_COLOR` turns colours off. On etcd, watches of
//! the workspace's keys wake it instead.

mod actions;
mod model;
#[cfg(test)]
mod tests;
mod view;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jiff::Timestamp;
use maos_coordination::Workspace;
use maos_coordination::channel::ChannelsWatch;
use maos_coordination::wake::{DirWatch, Woken};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;
use actions::{Action, Ask, Wanting};
use model::{Changes, Model, Parts};
use view::{Pane, View};

/// How long the key loop waits on the terminal before it looks at the watch again.
const KEY_WAIT: Duration = Duration::from_millis(250);
/// The screen is drawn again at least this often (ages, times left)…
const REDRAW: Duration = Duration::from_secs(5);
/// …and the whole state read again (expiries, a change the watch missed) at least this often,
/// or [`FULL_READ_FACTOR`] times as long as the last whole read took when that is longer (an
/// idle dashboard on a big workspace stays well under 1% of a core).
const REFRESH: Duration = Duration::from_secs(5);
const FULL_READ_FACTOR: u32 = 200;
/// After a read, the next one waits this many times as long as the read took (so that a
/// busy team's changes keep the dashboard under a fifth of a core however big the workspace)…
const SETTLE_FACTOR: u32 = 4;
/// …but never longer than this (a change shows within about a second).
const MAX_SETTLE: Duration = Duration::from_millis(600);

pub fn run(ctx: &Context) -> Result<(), CliError> {
    let ws = ctx.workspace()?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    if !std::io::stdout().is_terminal() {
        return print_panes(&ws, &ctx.agent);
    }
    // Watched before the first read: nothing changed since goes unseen.
    let changed = Arc::new(Mutex::new(Changes::default()));
    watch_for_changes(&ws, Arc::clone(&changed));
    let mut terminal = ratatui::try_init().map_err(|e| ui_error("open the terminal", e))?;
    let shown = show(&mut terminal, &ws, &ctx.agent, !no_color, &changed);
    // Whatever happened, the terminal is given back as it was.
    ratatui::try_restore().map_err(|e| ui_error("restore the terminal", e))?;
    shown
}

fn ui_error(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Error, anyhow::anyhow!("cannot {what}: {e}"))
}

/// Marks in `changed` the parts of the model whose records changed (threads on notify
/// watches, or on etcd a watch of each part's keys; without them — a network file system —
/// the periodic refresh alone keeps the view live).
fn watch_for_changes(ws: &Workspace, changed: Arc<Mutex<Changes>>) {
    #[cfg(feature = "etcd")]
    if let maos_coordination::store::Store::Etcd(etcd) = ws.store() {
        // A watch per part's keys: the dashboard's own reads that write (an inbox's mutex
        // key) fall outside them, so they do not wake it again.
        for (prefix, part) in [
            ("agents/", Parts::AGENTS),
            ("tasks/", Parts::TASKS),
            ("locks/", Parts::LOCKS),
            ("channels/", Parts::CHANNELS),
            ("merge/", Parts::MERGES),
        ] {
            let Ok(mut watch) = etcd.watch(prefix) else {
                continue;
            };
            let changed = Arc::clone(&changed);
            let _ = std::thread::Builder::new()
                .name("maos-ui-watch".into())
                .spawn(move || {
                    // A watch that broke leaves the periodic refresh.
                    while let Ok(woken) = watch.wait(Duration::from_secs(3600)) {
                        if woken {
                            mark(&changed, |c| c.mark(part));
                        }
                    }
                });
        }
        return;
    }
    // Messages: every channel's folder, each send seen once it has published.
    if let Ok(mut channels) = ChannelsWatch::start(ws) {
        let changed = Arc::clone(&changed);
        let _ = std::thread::Builder::new()
            .name("maos-ui-channels".into())
            .spawn(move || {
                // A channel watched for the first time has its sends published by then.
                while let Ok(began) = channels.refresh() {
                    if began {
                        mark(&changed, |c| c.mark(Parts::CHANNELS));
                    }
                    match channels.wait(Duration::from_secs(3600)) {
                        Woken::Event => {
                            mark(&changed, |c| c.mark(Parts::CHANNELS));
                        }
                        Woken::Timeout => {}
                        // No notify here: the periodic refresh alone.
                        Woken::Closed => return,
                    }
                }
            });
    }
    let Some(mut watch) = DirWatch::start(ws.dir(), |_| false) else {
        return;
    };
    // Records, each in its folder; waiting lines are seen by their waiters' wait records. A
    // folder that does not exist yet (no task made so far) is watched once it appears.
    let mut unwatched: Vec<PathBuf> = [
        "agents",
        "tasks",
        "locks",
        "locks/reservations",
        "locks/waits",
        "locks/interests",
        "merge",
    ]
    .iter()
    .map(|sub| ws.dir().join(sub))
    .filter(|folder| !watch.add(folder))
    .collect();
    let dir = ws.dir().to_path_buf();
    let _ = std::thread::Builder::new()
        .name("maos-ui-watch".into())
        .spawn(move || {
            loop {
                match watch.wait(Duration::from_secs(3600)) {
                    Woken::Event => {
                        let announced = watch.take_announced();
                        // A folder watched from now on is read again once watched: what was
                        // written in it before made no event here.
                        let mut began = Vec::new();
                        unwatched.retain(|folder| {
                            let added = watch.add(folder);
                            if added {
                                began.push(folder.clone());
                            }
                            !added
                        });
                        mark(&changed, |c| {
                            if announced.must_list {
                                c.mark(Parts::ALL);
                            }
                            for path in announced.paths.iter().chain(&began) {
                                c.mark_path(path.strip_prefix(&dir).unwrap_or(path));
                            }
                        });
                    }
                    Woken::Timeout => {}
                    Woken::Closed => return,
                }
            }
        });
}

/// The changes marked so far (a watch thread that panicked left them as they were).
fn lock(changed: &Mutex<Changes>) -> std::sync::MutexGuard<'_, Changes> {
    changed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn mark(changed: &Mutex<Changes>, how: impl FnOnce(&mut Changes)) {
    how(&mut lock(changed));
}

/// The key loop: draws when something changed, reads a key, until `q` or Ctrl-C.
fn show(
    terminal: &mut ratatui::DefaultTerminal,
    ws: &Workspace,
    me: &str,
    color: bool,
    changed: &Mutex<Changes>,
) -> Result<(), CliError> {
    let mut view = View::new(color);
    // When anything, and when everything, was last read; when the screen was last drawn.
    let started = Instant::now();
    let mut model = Model::gather(ws, me);
    let mut gathered = Instant::now();
    let mut gathered_all = gathered;
    let mut full_every = REFRESH.max(started.elapsed() * FULL_READ_FACTOR);
    let mut settle = Duration::ZERO;
    let mut drawn = Instant::now();
    let mut redraw = true;
    loop {
        let all_due = gathered_all.elapsed() >= full_every;
        if all_due || (gathered.elapsed() >= settle && !lock(changed).is_empty()) {
            let marked = std::mem::take(&mut *lock(changed));
            let changes = if all_due { Changes::all() } else { marked };
            let started = Instant::now();
            model.refresh(ws, &changes);
            let cost = started.elapsed();
            settle = (cost * SETTLE_FACTOR).min(MAX_SETTLE);
            gathered = Instant::now();
            if all_due {
                gathered_all = gathered;
                full_every = REFRESH.max(cost * FULL_READ_FACTOR);
            }
            let rows = view::rows(&model, &view);
            view.select(0, rows);
            redraw = true;
        }
        if redraw || drawn.elapsed() >= REDRAW {
            drawn = Instant::now();
            terminal
                .draw(|frame| view::draw(frame, &model, &view, Timestamp::now()))
                .map_err(|e| ui_error("draw", e))?;
            redraw = false;
        }
        if !event::poll(KEY_WAIT).map_err(|e| ui_error("read the terminal", e))? {
            continue;
        }
        match event::read().map_err(|e| ui_error("read the terminal", e))? {
            Event::Key(key) if key.kind != KeyEventKind::Release => {
                match handle_key(&mut view, &model, key) {
                    After::Quit => return Ok(()),
                    After::Do(action) => {
                        let done = action.run(ws, me);
                        if action == Action::Doctor {
                            view.detail = Some(done);
                        } else {
                            view.status = Some(done);
                        }
                        mark(changed, |c| c.mark(Parts::ALL));
                    }
                    After::Thread { channel, seq } => {
                        view.detail = Some(model::thread_text(ws, &channel, seq));
                    }
                    After::Stay => {}
                }
                redraw = true;
            }
            Event::Resize(..) => redraw = true,
            _ => {}
        }
    }
}

/// What a key leads to.
#[derive(Debug, PartialEq, Eq)]
enum After {
    Stay,
    Quit,
    /// An action, confirmed.
    Do(Action),
    /// Show the whole thread message `seq` of `channel` belongs to.
    Thread {
        channel: String,
        seq: u64,
    },
}

/// Applies `key` to the view.
fn handle_key(view: &mut View, model: &Model, key: KeyEvent) -> After {
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if ctrl_c {
        return After::Quit;
    }
    if let Some(ask) = view.ask.take() {
        return answer(view, ask, key.code);
    }
    view.status = None;
    if view.typing {
        match key.code {
            KeyCode::Enter => view.typing = false,
            KeyCode::Esc => {
                view.typing = false;
                view.filter.clear();
            }
            KeyCode::Backspace => {
                view.filter.pop();
            }
            KeyCode::Char(c) => view.filter.push(c),
            _ => {}
        }
        view.selected[1] = 0;
        return After::Stay;
    }
    if view.detail.is_some() || view.help {
        if matches!(
            key.code,
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | '?')
        ) {
            view.detail = None;
            view.help = false;
        }
        return After::Stay;
    }
    let rows = view::rows(model, view);
    let at = Pane::ALL.iter().position(|p| *p == view.pane).unwrap_or(0);
    match key.code {
        KeyCode::Char('q') => return After::Quit,
        KeyCode::Char(c @ '1'..='5') => view.pane = Pane::ALL[usize::from(c as u8 - b'1')],
        KeyCode::Tab => view.pane = Pane::ALL[(at + 1) % Pane::ALL.len()],
        KeyCode::BackTab => view.pane = Pane::ALL[(at + Pane::ALL.len() - 1) % Pane::ALL.len()],
        KeyCode::Down | KeyCode::Char('j') => view.select(1, rows),
        KeyCode::Up | KeyCode::Char('k') => view.select(-1, rows),
        KeyCode::PageDown => view.select(10, rows),
        KeyCode::PageUp => view.select(-10, rows),
        KeyCode::Enter | KeyCode::Right if view.pane == Pane::Messages => {
            return into_messages(view, model);
        }
        KeyCode::Esc | KeyCode::Left if view.showing_thread() => view.in_thread = false,
        KeyCode::Enter => view.detail = view::record(model, view),
        KeyCode::Char('?') => view.help = true,
        KeyCode::Char('p') => {
            let problems = model.problems();
            view.detail = Some(match problems.is_empty() {
                true => "everything could be read".to_owned(),
                false => problems.join("\n\n"),
            });
        }
        KeyCode::Char('/') => {
            view.pane = Pane::Tasks;
            view.typing = true;
        }
        KeyCode::Char(c @ ('m' | 'r' | 'c' | 'b' | 'd')) => view.ask = asked(model, view, c),
        _ => {}
    }
    After::Stay
}

/// Enter in the Messages pane: into the selected channel's messages (the newest selected),
/// or, there, the whole thread of the selected one.
fn into_messages(view: &mut View, model: &Model) -> After {
    let Some(channel) = model.channels.get(view.channel()) else {
        return After::Stay;
    };
    if !view.in_thread {
        view.in_thread = true;
        view.message = channel.recent.len().saturating_sub(1);
        return After::Stay;
    }
    match model::threaded(&channel.recent).get(view.message) {
        Some((_, message)) => After::Thread {
            channel: channel.name.clone(),
            seq: message.seq,
        },
        None => After::Stay,
    }
}

/// What the action key `key` asks for on the current pane's selected row (`None`: nothing
/// selected there to act on).
fn asked(model: &Model, view: &View, key: char) -> Option<Ask> {
    let at = view.row();
    let text = |then| {
        Some(Ask::Text {
            then,
            input: String::new(),
        })
    };
    match (key, view.pane) {
        ('d', _) => Some(Ask::Confirm(Action::Doctor)),
        ('m', Pane::Messages) => {
            let channel = model.channels.get(view.channel())?;
            let reply_to = match view.in_thread {
                true => Some(model::threaded(&channel.recent).get(at)?.1.seq),
                false => None,
            };
            text(Wanting::Message {
                channel: channel.name.clone(),
                reply_to,
            })
        }
        ('r', Pane::Tasks) => text(Wanting::Assignee {
            task: view::shown_tasks(model, &view.filter).get(at)?.id.clone(),
        }),
        ('c', Pane::Tasks) => Some(Ask::Confirm(Action::Cancel {
            task: view::shown_tasks(model, &view.filter).get(at)?.id.clone(),
        })),
        ('b', Pane::Locks) => {
            let lock = model.locks.get(at)?;
            text(Wanting::Reason {
                resource: lock.resource.clone(),
                reservation: lock.kind != "lock",
            })
        }
        _ => None,
    }
}

/// `code` typed while `ask` waits: text goes into it, Enter asks for the yes, `y` does it,
/// `n` or Esc gives it up.
fn answer(view: &mut View, ask: Ask, code: KeyCode) -> After {
    match (ask, code) {
        (_, KeyCode::Esc) => {}
        (Ask::Text { then, input }, KeyCode::Enter) if !input.trim().is_empty() => {
            view.ask = Some(Ask::Confirm(then.with(input.trim().to_owned())));
        }
        (Ask::Text { then, mut input }, code) => {
            match code {
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                _ => {}
            }
            view.ask = Some(Ask::Text { then, input });
        }
        (Ask::Confirm(action), KeyCode::Char('y' | 'Y')) => return After::Do(action),
        (Ask::Confirm(_), _) => view.status = Some("not done".to_owned()),
    }
    After::Stay
}

/// Every pane once, as plain text (stdout is not a terminal): as wide as `COLUMNS` says
/// (100 otherwise), each as tall as it needs; then what could not be read.
fn print_panes(ws: &Workspace, me: &str) -> Result<(), CliError> {
    let model = Model::gather(ws, me);
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(100)
        .max(40);
    let mut view = View::new(false);
    for pane in Pane::ALL {
        view.pane = pane;
        let height = 6
            + u16::try_from(view::rows(&model, &view))
                .unwrap_or(200)
                .min(200)
            + u16::try_from(model.cycles.len()).unwrap_or(0)
            + model
                .forecast
                .as_ref()
                .map_or(0, |f| u16::try_from(f.branches.len()).unwrap_or(0) + 3)
            + if pane == Pane::Messages { 20 } else { 0 };
        output::line(&screen(&model, &view, width, height, Timestamp::now()))?;
    }
    let problems = model.problems();
    if !problems.is_empty() {
        output::line("\nCould not be read:")?;
        for problem in problems {
            output::line(&format!("  {problem}"))?;
        }
    }
    Ok(())
}

/// The screen `view` of `model` would show at `width` × `height`, as text.
fn screen(model: &Model, view: &View, width: u16, height: u16, now: Timestamp) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(terminal) => terminal,
        Err(never) => match never {},
    };
    let _ = terminal.draw(|frame| view::draw(frame, model, view, now));
    let buffer = terminal.backend().buffer();
    let mut lines = Vec::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        lines.push(line.trim_end().to_owned());
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}
