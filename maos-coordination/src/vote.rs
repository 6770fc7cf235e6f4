//! Votes on proposals: an agent proposes (`maos vote propose`), the eligible voters — the
//! holders of a role, or agents named — vote once each (`maos vote cast`), and the outcome
//! is decided exactly once: approved when the yes votes reach the quorum, rejected when the
//! quorum can no longer be reached, expired when the deadline passes first. The outcome is
//! announced on the `votes` channel by the process that decided it; `maos merge run
//! --require-approval` merges only under an approved proposal.
//!
//! Kept in `.maos/votes/<id>/`: `proposal.json`, one `<agent>.json` per vote (created
//! exclusively: a second vote by the same agent is refused, the first stands), and
//! `outcome.json` (created exclusively by whoever decides first).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::agents::{AgentStatus, Registry};
use crate::atomic::Durability;
use crate::channel::{self, Channel, ChannelName, Draft};
use crate::error::ErrorKind;
use crate::fs::FsError;
use crate::journal::{self, Event};
use crate::name::{self, NameKind};
use crate::record::{self, RecordError};
use crate::store::Spot;
use crate::workspace::Workspace;

/// The channel outcomes are announced on.
pub const VOTES_CHANNEL: &str = "votes";

/// A vote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    /// No such proposal.
    #[error("no proposal `{0}`")]
    NotFound(String),
    /// The agent is not among the proposal's voters.
    #[error("`{agent}` may not vote on `{id}`: the voters are {voters}")]
    NotAVoter {
        /// The proposal.
        id: String,
        /// Who tried.
        agent: String,
        /// Who may.
        voters: String,
    },
    /// The agent voted already.
    #[error("`{agent}` already voted {vote} on `{id}` (one vote per agent)")]
    AlreadyVoted {
        /// The proposal.
        id: String,
        /// Who.
        agent: String,
        /// What it voted.
        vote: String,
    },
    /// The outcome is decided.
    #[error("proposal `{id}` is closed: {outcome}")]
    Closed {
        /// The proposal.
        id: String,
        /// Its outcome.
        outcome: Outcome,
    },
    /// What was asked for makes no proposal: no voters, a quorum out of range.
    #[error("{0}")]
    Invalid(String),
    /// A name was refused.
    #[error(transparent)]
    Name(#[from] name::NameError),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] FsError),
    /// The store (etcd) could not be reached or refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A record is broken.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The registry could not be read.
    #[error(transparent)]
    Agents(Box<crate::agents::AgentError>),
    /// The outcome could not be announced.
    #[error(transparent)]
    Channel(Box<channel::ChannelError>),
}

impl VoteError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VoteError::NotFound(_) => ErrorKind::NotFound,
            VoteError::NotAVoter { .. }
            | VoteError::AlreadyVoted { .. }
            | VoteError::Closed { .. } => ErrorKind::Conflict,
            VoteError::Invalid(_) => ErrorKind::InvalidInput,
            VoteError::Name(e) => e.kind(),
            VoteError::Io(e) => e.kind(),
            VoteError::Store(e) => e.kind(),
            VoteError::Record(e) => e.kind(),
            VoteError::Agents(e) => e.kind(),
            VoteError::Channel(e) => e.kind(),
        }
    }
}

impl From<crate::agents::AgentError> for VoteError {
    fn from(e: crate::agents::AgentError) -> Self {
        VoteError::Agents(Box::new(e))
    }
}

impl From<channel::ChannelError> for VoteError {
    fn from(e: channel::ChannelError) -> Self {
        VoteError::Channel(Box::new(e))
    }
}

/// Who may vote: the holders of a role (when proposed), or agents named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Voters {
    /// Every agent that held the role (and had not left) when it was proposed.
    Role(String),
    /// These agents.
    Agents(Vec<String>),
}

impl Voters {
    /// `role:<role>`, or agent ids separated by commas.
    pub fn parse(text: &str) -> Result<Self, VoteError> {
        if let Some(role) = text.strip_prefix("role:") {
            name::validate(NameKind::Role, role)?;
            return Ok(Voters::Role(role.to_owned()));
        }
        let agents: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        for agent in &agents {
            name::validate(NameKind::Agent, agent)?;
        }
        if agents.is_empty() {
            return Err(VoteError::Invalid(
                "no voters: give `role:<role>` or agent ids separated by commas".into(),
            ));
        }
        Ok(Voters::Agents(agents))
    }
}

/// How many yes votes approve: a number, or a majority of the eligible voters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// This many.
    Count(usize),
    /// More than half.
    Majority,
}

impl Quorum {
    /// `majority` or a positive number.
    pub fn parse(text: &str) -> Result<Self, VoteError> {
        match text {
            "majority" => Ok(Quorum::Majority),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Quorum::Count(n)),
                _ => Err(VoteError::Invalid(format!(
                    "`{n}` is not a quorum: give a positive number or `majority`"
                ))),
            },
        }
    }
}

/// A proposal as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Its id (`v-` and 6 hex digits).
    pub id: String,
    /// What is proposed.
    pub text: String,
    /// Who proposed it.
    pub proposer: String,
    /// Who may vote, as asked.
    pub voters: Voters,
    /// The agents who may vote (resolved when proposed).
    pub eligible: Vec<String>,
    /// Yes votes needed.
    pub quorum: usize,
    /// When it expires undecided.
    pub deadline: Option<Timestamp>,
    /// When it was proposed.
    pub created_at: Timestamp,
}

/// One agent's vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ballot {
    /// Who voted.
    pub agent: String,
    /// Yes or no.
    pub yes: bool,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Undecided.
    Open,
    /// The yes votes reached the quorum.
    Approved,
    /// The quorum can no longer be reached.
    Rejected,
    /// The deadline passed undecided.
    Expired,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Open => "open",
            Outcome::Approved => "approved",
            Outcome::Rejected => "rejected",
            Outcome::Expired => "expired",
        })
    }
}

/// The decision, as recorded once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Decision {
    outcome: Outcome,
    decided_at: Timestamp,
    yes: usize,
    no: usize,
}

/// A proposal, its votes and its outcome: what `maos vote show` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    /// The id.
    pub id: String,
    /// What is proposed.
    pub text: String,
    /// Who proposed it.
    pub proposer: String,
    /// The agents who may vote.
    pub voters: Vec<String>,
    /// Yes votes needed.
    pub quorum: usize,
    /// When it expires undecided.
    pub deadline: Option<Timestamp>,
    /// The votes cast, in order of casting.
    pub votes: Vec<Ballot>,
    /// Where it stands.
    pub outcome: Outcome,
    /// When the outcome was decided.
    pub decided_at: Option<Timestamp>,
}

/// The votes of a workspace.
#[derive(Debug, Clone)]
pub struct Votes {
    ws: Workspace,
}

/// Where votes are, relative to `.maos/` (files, or keys of the same paths on etcd).
const VOTES: &str = "votes";

impl Votes {
    /// The votes of `ws`.
    pub fn new(ws: &Workspace) -> Self {
        Self { ws: ws.clone() }
    }

    /// Proposal `id`'s folder, relative to `.maos/`.
    fn proposal_dir(&self, id: &str) -> PathBuf {
        Path::new(VOTES).join(name::file_name(id))
    }

    /// The record at `rel` (relative to `.maos/`).
    fn spot(&self, rel: PathBuf) -> Spot {
        Spot::new(self.ws.store(), self.ws.dir(), rel)
    }

    /// The record at `place`, decoded as `what`.
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        place: &Spot,
        what: &'static str,
    ) -> Result<Option<T>, VoteError> {
        match place.read()? {
            Some(bytes) => Ok(Some(record::decode(&place.path(), what, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Records a proposal by `proposer`. A role's holders are resolved now (agents that
    /// have not left); the quorum must be reachable.
    pub fn propose(
        &self,
        proposer: &str,
        text: &str,
        voters: Voters,
        quorum: Quorum,
        deadline: Option<Timestamp>,
    ) -> Result<Proposal, VoteError> {
        name::validate(NameKind::Agent, proposer)?;
        if text.trim().is_empty() {
            return Err(VoteError::Invalid("the proposal's text is empty".into()));
        }
        let eligible = match &voters {
            Voters::Agents(agents) => {
                let mut agents = agents.clone();
                agents.sort();
                agents.dedup();
                agents
            }
            Voters::Role(role) => {
                let (records, _) = Registry::new(&self.ws).list()?;
                records
                    .into_iter()
                    .filter(|r| r.status != AgentStatus::Gone && r.role.as_deref() == Some(role))
                    .map(|r| r.id)
                    .collect()
            }
        };
        if eligible.is_empty() {
            return Err(VoteError::Invalid(format!(
                "no agent may vote: nobody holds {voters:?}"
            )));
        }
        let quorum = match quorum {
            Quorum::Majority => eligible.len() / 2 + 1,
            Quorum::Count(n) if n <= eligible.len() => n,
            Quorum::Count(n) => {
                return Err(VoteError::Invalid(format!(
                    "a quorum of {n} can never be reached by {} voter(s)",
                    eligible.len()
                )));
            }
        };
        let proposal = Proposal {
            id: format!("v-{}", &Uuid::new_v4().simple().to_string()[..6]),
            text: text.to_owned(),
            proposer: proposer.to_owned(),
            voters,
            eligible,
            quorum,
            deadline,
            created_at: Timestamp::now(),
        };
        self.publish_new(
            self.proposal_dir(&proposal.id).join("proposal.json"),
            &record::encode(&proposal),
        )?;
        journal::record(
            &self.ws,
            Event::new("vote.proposed")
                .agent(proposer)
                .subject(proposal.id.clone())
                .data(json!({ "text": proposal.text, "voters": proposal.eligible, "quorum": proposal.quorum })),
        );
        Ok(proposal)
    }

    /// Creates the record at `rel` with `bytes` unless it exists: `false` when it did.
    fn publish_new(&self, rel: PathBuf, bytes: &[u8]) -> Result<bool, VoteError> {
        Ok(self.spot(rel).create(bytes, Durability::Fsync)?)
    }

    fn proposal(&self, id: &str) -> Result<Proposal, VoteError> {
        name::validate(NameKind::Task, id)?;
        let place = self.spot(self.proposal_dir(id).join("proposal.json"));
        self.read(&place, "proposal")?
            .ok_or_else(|| VoteError::NotFound(id.to_owned()))
    }

    /// `agent` votes on proposal `id`. Refused when it is not a voter, voted already, or the
    /// outcome is decided; the outcome is decided (and announced) when this vote settles it.
    pub fn cast(
        &self,
        id: &str,
        agent: &str,
        yes: bool,
        reason: Option<String>,
    ) -> Result<Standing, VoteError> {
        name::validate(NameKind::Agent, agent)?;
        let proposal = self.proposal(id)?;
        let standing = self.standing(&proposal)?;
        if standing.outcome != Outcome::Open {
            return Err(VoteError::Closed {
                id: id.to_owned(),
                outcome: standing.outcome,
            });
        }
        if !proposal.eligible.iter().any(|a| a == agent) {
            return Err(VoteError::NotAVoter {
                id: id.to_owned(),
                agent: agent.to_owned(),
                voters: proposal.eligible.join(", "),
            });
        }
        let ballot = Ballot {
            agent: agent.to_owned(),
            yes,
            reason,
            at: Timestamp::now(),
        };
        let rel = self
            .proposal_dir(id)
            .join(format!("{}.json", name::file_name(agent)));
        if !self.publish_new(rel.clone(), &record::encode(&ballot))? {
            let first: Ballot = self.read(&self.spot(rel.clone()), "vote")?.ok_or_else(|| {
                RecordError::corrupt(&self.spot(rel).path(), "vote", "it was there, then gone")
            })?;
            return Err(VoteError::AlreadyVoted {
                id: id.to_owned(),
                agent: agent.to_owned(),
                vote: if first.yes { "yes" } else { "no" }.into(),
            });
        }
        journal::record(
            &self.ws,
            Event::new("vote.cast")
                .agent(agent)
                .subject(id)
                .data(json!({ "yes": yes })),
        );
        self.standing(&proposal)
    }

    /// Where proposal `id` stands now (deciding it, once, when its votes or its deadline
    /// settle it).
    pub fn show(&self, id: &str) -> Result<Standing, VoteError> {
        let proposal = self.proposal(id)?;
        self.standing(&proposal)
    }

    /// Every file under `votes/` that cannot be read as what it should be (for `maos
    /// doctor`).
    pub fn broken_files(&self) -> Result<Vec<RecordError>, VoteError> {
        let store = self.ws.store();
        let mut broken = Vec::new();
        for proposal in store.names_in(self.ws.dir(), Path::new(VOTES))? {
            let dir = Path::new(VOTES).join(&proposal);
            for file in store.names_in(self.ws.dir(), &dir)? {
                let place = self.spot(dir.join(&file));
                let Some(bytes) = place.read()? else {
                    continue;
                };
                let path = place.path();
                let read = match file.as_str() {
                    "proposal.json" => {
                        record::decode::<Proposal>(&path, "proposal", &bytes).map(drop)
                    }
                    "outcome.json" => {
                        record::decode::<Decision>(&path, "vote outcome", &bytes).map(drop)
                    }
                    f if f.ends_with(".json") => {
                        record::decode::<Ballot>(&path, "vote", &bytes).map(drop)
                    }
                    _ => Ok(()),
                };
                broken.extend(read.err());
            }
        }
        Ok(broken)
    }

    fn standing(&self, proposal: &Proposal) -> Result<Standing, VoteError> {
        let dir = self.proposal_dir(&proposal.id);
        let mut votes: Vec<Ballot> = Vec::new();
        for file in self.ws.store().names_in(self.ws.dir(), &dir)? {
            if file == "proposal.json" || file == "outcome.json" || !file.ends_with(".json") {
                continue;
            }
            let Some(ballot) = self.read::<Ballot>(&self.spot(dir.join(&file)), "vote")? else {
                continue;
            };
            if proposal.eligible.contains(&ballot.agent) {
                votes.push(ballot);
            }
        }
        votes.sort_by(|a, b| (a.at, &a.agent).cmp(&(b.at, &b.agent)));
        let decision =
            match self.read::<Decision>(&self.spot(dir.join("outcome.json")), "vote outcome")? {
                Some(decision) => Some(decision),
                None => self.decide(proposal, &votes)?,
            };
        Ok(Standing {
            id: proposal.id.clone(),
            text: proposal.text.clone(),
            proposer: proposal.proposer.clone(),
            voters: proposal.eligible.clone(),
            quorum: proposal.quorum,
            deadline: proposal.deadline,
            votes,
            outcome: decision.as_ref().map_or(Outcome::Open, |d| d.outcome),
            decided_at: decision.map(|d| d.decided_at),
        })
    }

    /// Decides the outcome when the votes (or the deadline) settle it: the first process to
    /// record it announces it; another that raced it reads the recorded one.
    fn decide(&self, proposal: &Proposal, votes: &[Ballot]) -> Result<Option<Decision>, VoteError> {
        let yes = votes.iter().filter(|b| b.yes).count();
        let no = votes.len() - yes;
        let now = Timestamp::now();
        let outcome = if yes >= proposal.quorum {
            Outcome::Approved
        } else if no > proposal.eligible.len().saturating_sub(proposal.quorum) {
            Outcome::Rejected
        } else if proposal.deadline.is_some_and(|d| d <= now) {
            Outcome::Expired
        } else {
            return Ok(None);
        };
        let decision = Decision {
            outcome,
            decided_at: now,
            yes,
            no,
        };
        let rel = self.proposal_dir(&proposal.id).join("outcome.json");
        if !self.publish_new(rel.clone(), &record::encode(&decision))? {
            return self.read(&self.spot(rel), "vote outcome");
        }
        tracing::debug!(proposal = %proposal.id, %outcome, yes, no, "vote decided");
        journal::record(
            &self.ws,
            Event::new("vote.decided")
                .subject(proposal.id.clone())
                .data(json!({ "outcome": outcome, "yes": yes, "no": no })),
        );
        let announcement = Draft::new(json!({
            "id": proposal.id,
            "text": proposal.text,
            "outcome": outcome,
            "yes": yes,
            "no": no,
        }))
        .kind("vote.outcome");
        Channel::open(&self.ws, ChannelName::new(VOTES_CHANNEL)?)
            .send(channel::SYSTEM_SENDER, announcement)?;
        Ok(Some(decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_and_quorums_are_read_or_refused() {
        assert_eq!(
            Voters::parse("role:reviewer").unwrap(),
            Voters::Role("reviewer".into())
        );
        assert_eq!(
            Voters::parse("a, b,,c").unwrap(),
            Voters::Agents(vec!["a".into(), "b".into(), "c".into()])
        );
        assert!(matches!(Voters::parse(" , "), Err(VoteError::Invalid(_))));
        assert!(Voters::parse("../x").is_err());
        assert_eq!(Quorum::parse("majority").unwrap(), Quorum::Majority);
        assert_eq!(Quorum::parse("3").unwrap(), Quorum::Count(3));
        for bad in ["0", "-1", "most"] {
            assert!(Quorum::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_quorum_that_can_never_be_reached_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(dir.path()).unwrap().workspace;
        let votes = Votes::new(&ws);
        let voters = Voters::Agents(vec!["a".into(), "b".into()]);
        assert!(matches!(
            votes.propose("lead", "x", voters.clone(), Quorum::Count(3), None),
            Err(VoteError::Invalid(_))
        ));
        let proposal = votes
            .propose("lead", "x", voters, Quorum::Majority, None)
            .unwrap();
        assert_eq!(proposal.quorum, 2);
        // One no already makes two yes votes impossible.
        assert_eq!(
            votes.cast(&proposal.id, "a", false, None).unwrap().outcome,
            Outcome::Rejected
        );
    }
}
