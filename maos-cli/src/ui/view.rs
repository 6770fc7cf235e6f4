//! Drawing the dashboard: a header naming the panes (the current one marked), the pane, a
//! footer with the keys; over it, on demand, the keys' help or the selected row's record.
//! Colour only where the terminal wants it (`NO_COLOR` off, stdout a terminal).

use std::cell::Cell as Shared;

use jiff::Timestamp;
use maos_coordination::task::Status;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::actions::Ask;
use super::model::{MessageRow, Model, TaskRow, threaded};

/// The panes, in the order of their keys (1–5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Agents,
    Tasks,
    Locks,
    Messages,
    Merges,
}

impl Pane {
    pub const ALL: [Pane; 5] = [
        Pane::Agents,
        Pane::Tasks,
        Pane::Locks,
        Pane::Messages,
        Pane::Merges,
    ];

    fn title(self) -> &'static str {
        match self {
            Pane::Agents => "Agents",
            Pane::Tasks => "Tasks",
            Pane::Locks => "Locks",
            Pane::Messages => "Messages",
            Pane::Merges => "Merges",
        }
    }

    fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// What the person is looking at.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub pane: Pane,
    /// The selected row of each pane.
    pub selected: [usize; 5],
    /// In the Messages pane, the selection is on the selected channel's messages.
    pub in_thread: bool,
    /// The selected line of the channel's messages (see [`threaded`]).
    pub message: usize,
    /// The first row each table shows (kept between draws so that the list scrolls only
    /// when the selection leaves it; the last one is the messages').
    scroll: Shared<[usize; 6]>,
    /// Tasks shown only when their title, id, tags, role or assignee contain it.
    pub filter: String,
    /// Typing the filter (after `/`).
    pub typing: bool,
    /// The keys' help is shown.
    pub help: bool,
    /// A record shown over the pane.
    pub detail: Option<String>,
    /// What an action being asked for still needs.
    pub ask: Option<Ask>,
    /// What the last action did.
    pub status: Option<String>,
    /// Draw with colours (attributes are drawn either way).
    pub color: bool,
}

impl View {
    pub fn new(color: bool) -> Self {
        View {
            pane: Pane::Agents,
            selected: [0; 5],
            in_thread: false,
            message: 0,
            scroll: Shared::new([0; 6]),
            filter: String::new(),
            typing: false,
            help: false,
            detail: None,
            ask: None,
            status: None,
            color,
        }
    }

    /// The selected row of the current pane (in a thread: the selected message line).
    pub fn row(&self) -> usize {
        if self.showing_thread() {
            self.message
        } else {
            self.selected[self.pane.index()]
        }
    }

    /// Moves the selection of the current pane by `by` within `rows` rows.
    pub fn select(&mut self, by: isize, rows: usize) {
        let at = if self.showing_thread() {
            &mut self.message
        } else {
            &mut self.selected[self.pane.index()]
        };
        *at = at.saturating_add_signed(by).min(rows.saturating_sub(1));
    }

    /// The selected channel of the Messages pane.
    pub fn channel(&self) -> usize {
        self.selected[Pane::Messages.index()]
    }

    /// The selection is on a channel's messages.
    pub fn showing_thread(&self) -> bool {
        self.pane == Pane::Messages && self.in_thread
    }

    /// The rows of `items` that table `which` (a pane's index, or 5 for the messages) shows
    /// in `lines` lines, and where `selected` is among them. The table scrolls only when the
    /// selection would leave it; with nothing selected it shows its end. Only the rows shown
    /// are drawn (a pane of ten thousand tasks draws a screenful).
    fn window<'t, T>(
        &self,
        which: usize,
        items: &'t [T],
        lines: u16,
        selected: Option<usize>,
    ) -> (&'t [T], Option<usize>) {
        let lines = usize::from(lines).max(1);
        let last_start = items.len().saturating_sub(lines);
        let mut scroll = self.scroll.get();
        let first = match selected.map(|s| s.min(items.len().saturating_sub(1))) {
            Some(at) if at < scroll[which] => at,
            Some(at) if at >= scroll[which] + lines => at + 1 - lines,
            Some(_) => scroll[which].min(last_start),
            None => last_start,
        };
        scroll[which] = first;
        self.scroll.set(scroll);
        let shown = &items[first.min(items.len())..(first + lines).min(items.len())];
        (shown, selected.map(|at| at.saturating_sub(first)))
    }

    /// Draws `table` in `area`, the row `selected` of it highlighted.
    fn render_table(&self, frame: &mut Frame, area: Rect, table: Table, selected: Option<usize>) {
        let mut state = TableState::default().with_selected(selected);
        let table =
            table.row_highlight_style(self.style(Style::new().add_modifier(Modifier::REVERSED)));
        frame.render_stateful_widget(table, area, &mut state);
    }

    /// `style`, without its colours when colours are off (bold, reverse and dim stay: the
    /// selection must still show under `NO_COLOR`).
    fn style(&self, mut style: Style) -> Style {
        if !self.color {
            style.fg = None;
            style.bg = None;
        }
        style
    }
}

/// How long ago `t` was, shortly: `4s`, `12m`, `3h`, `2d`.
pub fn ago(now: Timestamp, t: Timestamp) -> String {
    span(now.as_second() - t.as_second())
}

/// A span of seconds, shortly (negative: `-`).
fn span(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let text = match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    };
    format!("{sign}{text}")
}

fn status_color(status: Status) -> Color {
    match status {
        Status::Pending => Color::Gray,
        Status::Blocked => Color::Yellow,
        Status::InProgress => Color::Cyan,
        Status::Review => Color::Magenta,
        Status::Completed => Color::Green,
        Status::Failed => Color::Red,
        Status::Cancelled => Color::DarkGray,
    }
}

fn state_color(state: &str) -> Color {
    match state {
        "alive" | "live" => Color::Green,
        "stale" | "expired" => Color::Yellow,
        "dead" => Color::Red,
        _ => Color::DarkGray,
    }
}

/// Whether `task` passes every word of `filter`: `tag:T`, `role:R` and `@agent` (its
/// assignee) match that field exactly; any other word must appear in its id, title, tags,
/// role or assignee.
fn passes(task: &TaskRow, filter: &str) -> bool {
    filter.split_whitespace().all(|word| {
        let word = word.to_lowercase();
        let is = |value: Option<&String>, wanted: &str| {
            value.is_some_and(|v| v.to_lowercase() == wanted)
        };
        if let Some(tag) = word.strip_prefix("tag:") {
            task.tags.iter().any(|t| t.to_lowercase() == tag)
        } else if let Some(role) = word.strip_prefix("role:") {
            is(task.role.as_ref(), role)
        } else if let Some(agent) = word.strip_prefix('@') {
            is(task.assignee.as_ref(), agent)
        } else {
            [&task.id, &task.title]
                .into_iter()
                .chain(&task.tags)
                .chain(task.role.as_ref())
                .chain(task.assignee.as_ref())
                .any(|field| field.to_lowercase().contains(&word))
        }
    })
}

/// The tasks the Tasks pane lists, in its order: held, ready (in the order claims take
/// them: highest priority, then oldest), blocked, then the rest; only those the filter lets
/// through.
pub fn shown_tasks<'a>(model: &'a Model, filter: &str) -> Vec<&'a TaskRow> {
    let rank = |status: Status| match status {
        Status::InProgress | Status::Review => 0,
        Status::Pending => 1,
        Status::Blocked => 2,
        Status::Failed => 3,
        Status::Completed => 4,
        Status::Cancelled => 5,
    };
    let mut tasks: Vec<&TaskRow> = model.tasks.iter().filter(|t| passes(t, filter)).collect();
    tasks.sort_by(|a, b| {
        (rank(a.status), b.priority, a.created, &a.id).cmp(&(
            rank(b.status),
            a.priority,
            b.created,
            &b.id,
        ))
    });
    tasks
}

/// How many rows the current pane has (what the selection moves over).
pub fn rows(model: &Model, view: &View) -> usize {
    match view.pane {
        Pane::Agents => model.agents.len(),
        Pane::Tasks => shown_tasks(model, &view.filter).len(),
        Pane::Locks => model.locks.len(),
        Pane::Messages if view.in_thread => model
            .channels
            .get(view.channel())
            .map_or(0, |c| c.recent.len()),
        Pane::Messages => model.channels.len(),
        Pane::Merges => model.forecast.as_ref().map_or(0, |f| f.conflicts.len()),
    }
}

/// The record of the selected row (what Enter shows).
pub fn record(model: &Model, view: &View) -> Option<String> {
    let at = view.row();
    match view.pane {
        Pane::Agents => model.agents.get(at).map(|a| a.record.clone()),
        Pane::Tasks => model.task_record(&shown_tasks(model, &view.filter).get(at)?.id),
        Pane::Locks => model.locks.get(at).map(|l| l.record.clone()),
        // Enter opens the channel's messages, then a whole thread (read from the channel).
        Pane::Messages => None,
        Pane::Merges => model
            .forecast
            .as_ref()
            .and_then(|f| f.conflicts.get(at))
            .map(|c| format!("{} × {}\n\n{}", c.a, c.b, c.files.join("\n"))),
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, model: &Model, view: &View, now: Timestamp) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, model, view);
    match view.pane {
        Pane::Agents => draw_agents(frame, body, model, view, now),
        Pane::Tasks => draw_tasks(frame, body, model, view),
        Pane::Locks => draw_locks(frame, body, model, view, now),
        Pane::Messages => draw_messages(frame, body, model, view, now),
        Pane::Merges => draw_merges(frame, body, model, view),
    }
    let keys = if view.typing {
        format!(" filter: {}▏  Enter keep  Esc clear", view.filter)
    } else if let Some(ask) = &view.ask {
        match ask {
            Ask::Text { then, input } => {
                format!(" {}: {input}▏  Enter go on  Esc cancel", then.label())
            }
            Ask::Confirm(action) => format!(" {}  y yes  n no", action.question()),
        }
    } else if let Some(status) = &view.status {
        format!(" {status}")
    } else if let [problem, more @ ..] = model.problems().as_slice() {
        match more.len() {
            0 => format!(" ! {problem}"),
            n => format!(" ! {} problems (p lists them): {problem}", n + 1),
        }
    } else {
        " 1-5/Tab pane  ↑↓ move  Enter open  / filter  ? keys  q quit".to_owned()
    };
    frame.render_widget(
        Paragraph::new(keys).style(view.style(Style::new().add_modifier(Modifier::DIM))),
        footer,
    );
    if let Some(text) = &view.detail {
        overlay(frame, "record (Esc closes)", text);
    } else if view.help {
        overlay(frame, "keys (Esc closes)", HELP);
    }
}

const HELP: &str = "1 2 3 4 5, Tab, Shift-Tab   switch pane
↑ ↓ (k j), PgUp PgDn        move the selection
Enter                       show the selected row's record
/                           filter the tasks: words in title, id, tags, role,
                            assignee; tag:T role:R @agent match that field
Enter, Esc                  Messages: into a channel's messages (its threads),
                            Enter again shows a whole thread, Esc goes back
m                           Messages: send to the selected channel (in its
                            messages: reply to the selected one)
r, c                        Tasks: reassign, cancel the selected task
b                           Locks: break the selected lock or reservation
d                           run doctor --fix
p                           what could not be read (broken records)
                            (each asks for confirmation: y yes, n or Esc no)
Esc                         close what is shown over the pane
?                           this help
q, Ctrl-C                   quit (the terminal is restored)";

fn overlay(frame: &mut Frame, title: &str, text: &str) {
    let area = frame.area();
    let inner = Rect {
        x: area.x + 2,
        y: area.y + 1,
        width: area.width.saturating_sub(4),
        height: area.height.saturating_sub(2),
    };
    frame.render_widget(Clear, inner);
    frame.render_widget(
        Paragraph::new(text.to_owned())
            .wrap(Wrap { trim: false })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(title.to_owned()),
            ),
        inner,
    );
}

fn draw_header(frame: &mut Frame, area: Rect, model: &Model, view: &View) {
    let mut spans = vec![Span::styled(
        " MAOS ",
        view.style(Style::new().add_modifier(Modifier::BOLD)),
    )];
    for (i, pane) in Pane::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, pane.title());
        if *pane == view.pane {
            spans.push(Span::styled(
                format!("[{}]", label.trim()),
                view.style(Style::new().add_modifier(Modifier::REVERSED)),
            ));
        } else {
            spans.push(Span::raw(label));
        }
    }
    spans.push(Span::raw(format!("  {} · {}", model.me, model.store)));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A pane's table: a bold header and a title on its top border.
fn table<'a>(
    view: &View,
    header: &[&'a str],
    widths: &[Constraint],
    rows: Vec<Row<'a>>,
    title: String,
) -> Table<'a> {
    Table::new(rows, widths.to_vec())
        .header(
            Row::new(header.iter().map(|h| Cell::from(*h)))
                .style(view.style(Style::new().add_modifier(Modifier::BOLD))),
        )
        .block(Block::default().borders(Borders::TOP).title(title))
}

fn or_dash(value: Option<&String>) -> String {
    value.cloned().unwrap_or_else(|| "-".to_owned())
}

fn draw_agents(frame: &mut Frame, area: Rect, model: &Model, view: &View, now: Timestamp) {
    let (agents, at) = view.window(
        0,
        &model.agents,
        area.height.saturating_sub(2),
        Some(view.row()),
    );
    let rows = agents
        .iter()
        .map(|a| {
            Row::new(vec![
                Cell::from(a.id.clone()),
                Cell::from(a.state.clone())
                    .style(view.style(Style::new().fg(state_color(&a.state)))),
                Cell::from(or_dash(a.role.as_ref())),
                Cell::from(or_dash(a.task.as_ref())),
                Cell::from(ago(now, a.heartbeat)),
                Cell::from(or_dash(a.branch.as_ref())),
                Cell::from(or_dash(a.worktree.as_ref())),
            ])
        })
        .collect();
    let alive = model.agents.iter().filter(|a| a.state == "alive").count();
    let title = format!(" {} agents, {alive} alive ", model.agents.len());
    let table = table(
        view,
        &[
            "agent", "state", "role", "task", "beat", "branch", "worktree",
        ],
        &[
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(5),
            Constraint::Length(16),
            Constraint::Min(10),
        ],
        rows,
        title,
    );
    view.render_table(frame, area, table, at);
}

fn draw_tasks(frame: &mut Frame, area: Rect, model: &Model, view: &View) {
    let [path, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(area);
    let critical = if model.critical.is_empty() {
        "critical path: none (nothing unfinished depends on anything)".to_owned()
    } else {
        format!("critical path: {}", model.critical.join(" → "))
    };
    frame.render_widget(
        Paragraph::new(critical)
            .wrap(Wrap { trim: true })
            .style(view.style(Style::new().add_modifier(Modifier::BOLD))),
        path,
    );
    let shown = shown_tasks(model, &view.filter);
    let (window, at) = view.window(1, &shown, list.height.saturating_sub(2), Some(view.row()));
    let rows = window
        .iter()
        .map(|t| {
            let on_path = model.critical.contains(&t.id);
            let detail = match (&t.blocked_by, t.status) {
                (Some(blocked), Status::Blocked) => blocked.clone(),
                _ => t.tags.join(" "),
            };
            let row = Row::new(vec![
                Cell::from(t.status.to_string())
                    .style(view.style(Style::new().fg(status_color(t.status)))),
                Cell::from(t.id.clone()),
                Cell::from(t.priority.to_string()),
                Cell::from(t.title.clone()),
                Cell::from(or_dash(t.assignee.as_ref())),
                Cell::from(detail),
            ]);
            if on_path {
                row.style(view.style(Style::new().add_modifier(Modifier::BOLD)))
            } else {
                row
            }
        })
        .collect();
    let held = model.tasks.iter().filter(|t| t.status.is_held()).count();
    let ready = model
        .tasks
        .iter()
        .filter(|t| t.status == Status::Pending)
        .count();
    let blocked = model
        .tasks
        .iter()
        .filter(|t| t.status == Status::Blocked)
        .count();
    let filter = if view.filter.is_empty() {
        String::new()
    } else {
        format!(", {} match /{}", shown.len(), view.filter)
    };
    let title = format!(
        " {held} in progress, {ready} ready, {blocked} blocked of {}{filter} ",
        model.tasks.len()
    );
    let table = table(
        view,
        &[
            "status",
            "id",
            "prio",
            "title",
            "assignee",
            "blocked by / tags",
        ],
        &[
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Min(16),
            Constraint::Length(10),
            Constraint::Min(14),
        ],
        rows,
        title,
    );
    view.render_table(frame, list, table, at);
}

fn draw_locks(frame: &mut Frame, area: Rect, model: &Model, view: &View, now: Timestamp) {
    let cycles: Vec<String> = model
        .cycles
        .iter()
        .map(|c| format!("DEADLOCK: {} — victim {}", c.describe(), c.victim))
        .collect();
    let [top, list] =
        Layout::vertical([Constraint::Length(cycles.len() as u16), Constraint::Min(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(cycles.join("\n"))
            .style(view.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))),
        top,
    );
    let in_cycle = |resource: &str| {
        model
            .cycles
            .iter()
            .any(|c| c.edges.iter().any(|e| e.resource == resource))
    };
    let (locks, at) = view.window(
        2,
        &model.locks,
        list.height.saturating_sub(2),
        Some(view.row()),
    );
    let rows = locks
        .iter()
        .map(|l| {
            let left = span(l.expires.as_second() - now.as_second());
            let row = Row::new(vec![
                Cell::from(l.resource.clone()),
                Cell::from(l.kind.clone()),
                Cell::from(l.owner.clone()),
                Cell::from(if l.state == "live" {
                    left
                } else {
                    l.state.clone()
                })
                .style(view.style(Style::new().fg(state_color(&l.state)))),
                Cell::from(l.waiters.join(", ")),
                Cell::from(l.purpose.clone()),
            ]);
            if in_cycle(&l.resource) {
                row.style(view.style(Style::new().fg(Color::Red)))
            } else {
                row
            }
        })
        .collect();
    let title = format!(
        " {} locks and reservations, {} deadlock(s) ",
        model.locks.len(),
        model.cycles.len()
    );
    let table = table(
        view,
        &["resource", "kind", "owner", "left", "waiting", "purpose"],
        &[
            Constraint::Min(14),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
        rows,
        title,
    );
    view.render_table(frame, list, table, at);
}

fn draw_messages(frame: &mut Frame, area: Rect, model: &Model, view: &View, now: Timestamp) {
    let [list, thread] =
        Layout::horizontal([Constraint::Length(34), Constraint::Min(10)]).areas(area);
    let channel_at = view.channel();
    let (channels, at) = view.window(
        3,
        &model.channels,
        list.height.saturating_sub(2),
        Some(channel_at),
    );
    let rows = channels
        .iter()
        .map(|c| {
            Row::new(vec![
                Cell::from(c.name.clone()),
                Cell::from(c.messages.to_string()),
                Cell::from(if c.unread > 0 {
                    c.unread.to_string()
                } else {
                    "-".to_owned()
                })
                .style(view.style(Style::new().add_modifier(Modifier::BOLD))),
                Cell::from(c.last.map_or_else(|| "-".to_owned(), |t| ago(now, t))),
            ])
        })
        .collect();
    let table = table(
        view,
        &["channel", "msgs", "new", "last"],
        &[
            Constraint::Min(12),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(5),
        ],
        rows,
        format!(" {} channels ", model.channels.len()),
    );
    view.render_table(frame, list, table, at);
    let Some(channel) = model.channels.get(channel_at) else {
        frame.render_widget(
            Block::default()
                .borders(Borders::TOP | Borders::LEFT)
                .title(" no channel "),
            thread,
        );
        return;
    };
    let lines = threaded(&channel.recent);
    let selected = view.in_thread.then_some(view.message);
    let (lines, at) = view.window(5, &lines, thread.height.saturating_sub(1), selected);
    let rows = lines
        .iter()
        .map(|&(reply, m)| {
            Row::new(vec![
                Cell::from(ago(now, m.at)),
                Cell::from(message_line(reply, m)),
            ])
        })
        .collect::<Vec<_>>();
    let hint = if view.in_thread {
        "Enter thread · m reply · Esc back"
    } else {
        "Enter: its messages"
    };
    let messages = Table::new(rows, [Constraint::Length(4), Constraint::Min(10)]).block(
        Block::default()
            .borders(Borders::TOP | Borders::LEFT)
            .title(format!(" {} · {hint} ", channel.name)),
    );
    view.render_table(frame, thread, messages, at);
}

/// One line of the thread view: `#seq sender: text`, a reply indented under its thread's
/// first message (naming the message it answers when that is another reply).
pub fn message_line(reply: bool, m: &MessageRow) -> String {
    let text = m.text.replace('\n', " ");
    match m.reply_to {
        Some(to) if reply && to != m.root() => {
            format!("  ↳ #{} {} (to #{to}): {text}", m.seq, m.sender)
        }
        _ if reply => format!("  ↳ #{} {}: {text}", m.seq, m.sender),
        _ => format!("#{} {}: {text}", m.seq, m.sender),
    }
}

fn draw_merges(frame: &mut Frame, area: Rect, model: &Model, view: &View) {
    let Some(forecast) = &model.forecast else {
        frame.render_widget(
            Paragraph::new(
                "no forecast yet: `maos merge forecast` checks every pair of agent branches",
            )
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::TOP).title(" Merges ")),
            area,
        );
        return;
    };
    let n = forecast.branches.len();
    let [matrix, pairs] =
        Layout::vertical([Constraint::Length(n as u16 + 2), Constraint::Min(1)]).areas(area);
    // Branches × branches: the number of files each pair would conflict on.
    let conflicts = |a: &str, b: &str| {
        forecast
            .conflicts
            .iter()
            .find(|c| (c.a == a && c.b == b) || (c.a == b && c.b == a))
            .map(|c| c.files.len())
    };
    let mut header = vec![Cell::from("")];
    header.extend((1..=n).map(|i| Cell::from(format!("{i:>3}"))));
    let rows: Vec<Row> =
        forecast
            .branches
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut cells = vec![Cell::from(format!("{} {a}", i + 1))];
                cells.extend(forecast.branches.iter().map(|b| match conflicts(a, b) {
                    _ if a == b => Cell::from("  ·"),
                    Some(files) => Cell::from(format!("{files:>3}")).style(
                        view.style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
                    ),
                    None => Cell::from("  -"),
                }));
                Row::new(cells)
            })
            .collect();
    let mut widths = vec![Constraint::Length(24)];
    widths.extend(std::iter::repeat_n(Constraint::Length(3), n));
    frame.render_widget(
        Table::new(rows, widths).header(Row::new(header)).block(
            Block::default().borders(Borders::TOP).title(format!(
                " forecast of {n} branches at {} (files in conflict per pair) ",
                forecast.checked_at.strftime("%H:%M:%S")
            )),
        ),
        matrix,
    );
    let (conflicts, at) = view.window(
        4,
        &forecast.conflicts,
        pairs.height.saturating_sub(2),
        Some(view.row()),
    );
    let rows = conflicts
        .iter()
        .map(|c| {
            Row::new(vec![
                Cell::from(format!("{} × {}", c.a, c.b)),
                Cell::from(c.files.join(", ")),
            ])
        })
        .collect();
    let table = table(
        view,
        &["pair", "files"],
        &[Constraint::Length(34), Constraint::Min(10)],
        rows,
        format!(" {} conflicting pair(s) ", forecast.conflicts.len()),
    );
    view.render_table(frame, pairs, table, at);
}
