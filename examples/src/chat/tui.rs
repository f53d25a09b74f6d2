//! The interactive terminal UI: messages, an input line, and a status bar
//! with the account, the room, the connection state with the reconnect
//! countdown, and the token's remaining life. Slash commands switch rooms
//! and accounts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::{DefaultTerminal, Frame};
use sessionkit::{LoopbackOptions, Session, SessionEvent};
use sessionkit_realtime::State;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::commands::account_name;
use super::conversation::{Conversation, ConversationEvent};
use super::setup::Setup;
use super::status::{describe_reason, describe_session_event, describe_state, seconds, until};
use super::{DEMO_USERS, Options};
use crate::protocol::ChatMessage;

/// How many messages of each room the UI keeps (older ones scroll away).
const KEEP_PER_ROOM: usize = 1000;

const HELP: &str = "/room NAME · /switch ACCOUNT · /login [USER] · /logout · /accounts · /quit";

pub(super) async fn run(setup: Setup, options: &Options) -> anyhow::Result<()> {
    let mut app = App::new(setup, options);
    // Outside the demo, start with the signed-in account (or say how to sign in).
    if app.setup.embedded.is_none() {
        let session = app.setup.active_session().await?;
        app.connect(session)?;
    } else if let Ok(user) = std::env::var("SESSIONKIT_DEMO_USER") {
        app.demo_sign_in(&user).await;
    }
    let keys = spawn_key_reader();
    let mut terminal = ratatui::init();
    let result = app.run(&mut terminal, keys).await;
    ratatui::restore();
    if let Some(active) = app.active.take() {
        active.conversation.shutdown().await;
    }
    result
}

/// Terminal input, read on a blocking thread and handed over a channel.
fn spawn_key_reader() -> mpsc::UnboundedReceiver<KeyEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                        if tx.send(key).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(false) => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

struct Active {
    session: Arc<Session>,
    conversation: Conversation,
    events: mpsc::UnboundedReceiver<ConversationEvent>,
    state: watch::Receiver<State>,
    session_events: broadcast::Receiver<SessionEvent>,
}

struct App {
    setup: Setup,
    room: String,
    messages: HashMap<String, Vec<ChatMessage>>,
    input: String,
    notice: String,
    connection: String,
    reconnect_at: Option<Instant>,
    /// The connection was lost since the last `Connected`.
    was_down: bool,
    /// `/quit` warned about unacknowledged messages once.
    quit_warned: bool,
    active: Option<Active>,
    quit: bool,
}

impl App {
    fn new(setup: Setup, options: &Options) -> Self {
        let notice = if setup.embedded.is_some() {
            format!(
                "Embedded demo. Type a name and press Enter to sign in as {} (password = name).",
                DEMO_USERS.join(", ")
            )
        } else {
            HELP.to_owned()
        };
        Self {
            setup,
            room: options.room.clone(),
            messages: HashMap::new(),
            input: String::new(),
            notice,
            connection: "not connected".to_owned(),
            reconnect_at: None,
            was_down: false,
            quit_warned: false,
            active: None,
            quit: false,
        }
    }

    fn connect(&mut self, session: Arc<Session>) -> anyhow::Result<()> {
        let (conversation, events) =
            Conversation::start(session.clone(), &self.setup.servers, &self.room)?;
        self.messages.clear();
        self.connection = "connecting".to_owned();
        self.reconnect_at = None;
        self.active = Some(Active {
            state: conversation.state(),
            session_events: session.events(),
            session,
            conversation,
            events,
        });
        Ok(())
    }

    async fn disconnect(&mut self) {
        if let Some(active) = self.active.take() {
            active.conversation.shutdown().await;
        }
        self.connection = "not connected".to_owned();
        self.reconnect_at = None;
    }

    async fn demo_sign_in(&mut self, user: &str) {
        let Some(embedded) = &self.setup.embedded else {
            return;
        };
        match embedded.sign_in(&self.setup.manager, user).await {
            Ok(account) => match self.setup.manager.session(&account.key) {
                Some(session) => {
                    self.disconnect().await;
                    self.notice = format!("Signed in as {}. {HELP}", account_name(&account));
                    if let Err(e) = self.connect(session) {
                        self.notice = format!("error: {e:#}");
                    }
                }
                None => self.notice = "error: the new session is not in memory".to_owned(),
            },
            Err(e) => self.notice = format!("error: {e:#}"),
        }
    }

    async fn run(
        &mut self,
        terminal: &mut DefaultTerminal,
        mut keys: mpsc::UnboundedReceiver<KeyEvent>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        while !self.quit {
            terminal
                .draw(|frame| self.draw(frame))
                .context("cannot draw")?;
            tokio::select! {
                key = keys.recv() => match key {
                    Some(key) => self.key(key).await,
                    None => self.quit = true,
                },
                activity = next_activity(&mut self.active) => match activity {
                    Activity::Event(event) => self.conversation_event(event),
                    Activity::State(state) => self.state(state),
                    Activity::Session(event) => {
                        if let Some(line) = describe_session_event(&event) {
                            self.notice = line;
                        }
                    }
                },
                _ = tick.tick() => {}
            }
        }
        Ok(())
    }

    fn conversation_event(&mut self, event: Option<ConversationEvent>) {
        match event {
            Some(ConversationEvent::Message(m)) => {
                let shown = self.messages.entry(m.room.clone()).or_default();
                shown.push(m);
                if shown.len() > KEEP_PER_ROOM {
                    shown.drain(..shown.len() - KEEP_PER_ROOM);
                }
            }
            Some(ConversationEvent::Refused { code, message, .. }) => {
                self.notice = format!("the server refused a message ({code}): {message}");
            }
            Some(_) => {}
            None => {
                // The connection closed for good: its last state says why.
                let last = self.active.as_ref().map(|a| a.state.borrow().clone());
                self.active = None;
                if let Some(last) = last {
                    self.state(last);
                }
            }
        }
    }

    fn state(&mut self, state: State) {
        self.connection = describe_state(&state);
        self.reconnect_at = match &state {
            State::Reconnecting { retry_in, .. } => Some(Instant::now() + *retry_in),
            _ => None,
        };
        match state {
            State::Connected { .. } if self.was_down => {
                self.was_down = false;
                self.notice = "Reconnected; nothing was lost.".to_owned();
            }
            State::Reconnecting {
                attempt, reason, ..
            } => {
                self.was_down = true;
                self.notice = format!(
                    "Connection lost: {}. Reconnecting (attempt {attempt}).",
                    describe_reason(&reason)
                );
            }
            State::Closed(sessionkit_realtime::CloseReason::SignedOut) => {
                self.notice = "Signed out by the server. /login to sign in again.".to_owned();
                self.active = None;
            }
            State::Closed(reason) => {
                self.notice = super::status::describe_close(&reason);
                self.active = None;
            }
            _ => {}
        }
    }

    async fn key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'd') if ctrl => self.quit = true,
            KeyCode::Esc => self.quit = true,
            KeyCode::Char(c) => self.input.push(c),
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Enter => {
                let line = std::mem::take(&mut self.input);
                self.enter(line.trim()).await;
            }
            _ => {}
        }
    }

    async fn enter(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if let Some(command) = line.strip_prefix('/') {
            let (name, arg) = command
                .split_once(' ')
                .map_or((command, ""), |(n, a)| (n, a.trim()));
            if let Err(e) = self.command(name, arg).await {
                self.notice = format!("error: {e:#}");
            }
            return;
        }
        match &self.active {
            Some(active) => {
                if let Err(e) = active.conversation.send(line).await {
                    self.notice = format!("error: {e:#}");
                }
            }
            None if self.setup.embedded.is_some() => self.demo_sign_in(line).await,
            None => self.notice = "Not signed in: /login first.".to_owned(),
        }
    }

    async fn command(&mut self, name: &str, arg: &str) -> anyhow::Result<()> {
        match name {
            "quit" | "q" => {
                let waiting = self
                    .active
                    .as_ref()
                    .map_or(0, |a| a.conversation.unacknowledged());
                if waiting > 0 && !self.quit_warned {
                    self.quit_warned = true;
                    self.notice = format!(
                        "{waiting} messages are not acknowledged yet; /quit again to leave anyway."
                    );
                } else {
                    self.quit = true;
                }
            }
            "help" => self.notice = HELP.to_owned(),
            "room" => {
                if let Some(active) = &self.active {
                    active.conversation.switch_room(arg).await?;
                } else if !crate::protocol::valid_room(arg) {
                    anyhow::bail!("{arg:?} is not a room name");
                }
                self.room = arg.to_owned();
                self.notice = format!("Now in #{arg}.");
            }
            "accounts" => {
                let active = self.setup.manager.active()?;
                let names: Vec<String> = self
                    .setup
                    .manager
                    .accounts()?
                    .iter()
                    .map(|a| {
                        let mark = if active.as_ref().is_some_and(|x| x.key == a.key) {
                            "*"
                        } else {
                            ""
                        };
                        format!("{mark}{}", account_name(a))
                    })
                    .collect();
                self.notice = format!("Accounts: {}", names.join(", "));
            }
            "switch" => {
                let account = self
                    .setup
                    .manager
                    .find(arg)?
                    .with_context(|| format!("no account {arg:?} (see /accounts)"))?;
                let session = self
                    .setup
                    .manager
                    .session(&account.key)
                    .with_context(|| format!("{arg} is not signed in"))?;
                self.setup.manager.switch(&account.key)?;
                self.disconnect().await;
                self.connect(session)?;
                self.notice = format!("Switched to {}.", account_name(&account));
            }
            "login" => {
                if self.setup.embedded.is_some() {
                    let user = if arg.is_empty() { DEMO_USERS[0] } else { arg };
                    self.demo_sign_in(user).await;
                } else {
                    self.notice = "Signing in: finish in the browser…".to_owned();
                    let session = self
                        .setup
                        .manager
                        .login_loopback(LoopbackOptions::system_browser())
                        .await?;
                    let name = account_name(session.info()).to_owned();
                    self.disconnect().await;
                    self.connect(session)?;
                    self.notice = format!("Signed in as {name}.");
                }
            }
            "logout" => {
                let account = self.setup.manager.active()?.context("not signed in")?;
                self.disconnect().await;
                let report = self.setup.manager.logout(&account.key).await;
                self.notice = if report.failures.is_empty() {
                    format!("Signed out of {}.", account_name(&account))
                } else {
                    format!("Sign-out of {} incomplete.", account_name(&account))
                };
            }
            other => anyhow::bail!("unknown command /{other} ({HELP})"),
        }
        Ok(())
    }

    fn draw(&self, frame: &mut Frame<'_>) {
        let [messages, input, status, notice] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length(3),
            Constraint::Length(1),
            Constraint::Length(2),
        ])
        .areas(frame.area());

        let shown = self
            .messages
            .get(&self.room)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let height = usize::from(messages.height.saturating_sub(2));
        let lines: Vec<Line<'_>> = shown
            .iter()
            .skip(shown.len().saturating_sub(height))
            .map(|m| {
                Line::from(vec![
                    Span::styled(format!("[{}] ", m.seq), Style::new().fg(Color::DarkGray)),
                    Span::styled(
                        format!("{}: ", m.user),
                        Style::new().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(m.text.as_str()),
                ])
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::new()
                    .borders(Borders::ALL)
                    .title(format!(" #{} ", self.room)),
            ),
            messages,
        );
        frame.render_widget(
            Paragraph::new(format!("> {}", self.input))
                .block(Block::new().borders(Borders::ALL).title(" message ")),
            input,
        );
        frame.render_widget(
            Paragraph::new(self.status_line()).style(Style::new().bg(Color::Blue).fg(Color::White)),
            status,
        );
        frame.render_widget(
            Paragraph::new(self.notice.as_str()).wrap(Wrap { trim: true }),
            notice,
        );
    }

    fn status_line(&self) -> String {
        let account = self.active.as_ref().map_or_else(
            || "signed out".to_owned(),
            |a| a.session.info().name().to_owned(),
        );
        let token = self.active.as_ref().map_or_else(String::new, |a| {
            match a.session.cached_access_token().1 {
                Some(at) if at > SystemTime::now() => format!(" │ token expires in {}", until(at)),
                Some(_) => " │ token expired".to_owned(),
                None => String::new(),
            }
        });
        let connection = match self.reconnect_at {
            Some(at) => format!(
                "reconnecting in {}",
                seconds(at.saturating_duration_since(Instant::now()))
            ),
            None => self.connection.clone(),
        };
        format!(" {account} │ #{} │ {connection}{token}", self.room)
    }
}

enum Activity {
    Event(Option<ConversationEvent>),
    State(State),
    Session(SessionEvent),
}

/// The next thing the active conversation has to say (never, without one).
async fn next_activity(active: &mut Option<Active>) -> Activity {
    let Some(a) = active else {
        return std::future::pending().await;
    };
    let state = &mut a.state;
    let session_events = &mut a.session_events;
    tokio::select! {
        event = a.events.recv() => Activity::Event(event),
        state = async {
            match state.changed().await {
                Ok(()) => state.borrow_and_update().clone(),
                Err(_) => std::future::pending().await,
            }
        } => Activity::State(state),
        event = async {
            loop {
                match session_events.recv().await {
                    Ok(event) => return event,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return std::future::pending().await;
                    }
                }
            }
        } => Activity::Session(event),
    }
}
