//! `maos vote propose|cast|show`

use maos_coordination::vote::{Quorum, Standing, Voters, Votes};

use crate::args::{CastArgs, ProposalArg, ProposeArgs, VoteCommand};
use crate::context::Context;
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(ctx: &Context, command: VoteCommand) -> Result<(), CliError> {
    let votes = Votes::new(&ctx.workspace()?);
    match command {
        VoteCommand::Propose(args) => propose(ctx, &votes, args),
        VoteCommand::Cast(args) => cast(ctx, &votes, args),
        VoteCommand::Show(ProposalArg { id }) => print(ctx, &votes.show(&id)?),
    }
}

fn propose(ctx: &Context, votes: &Votes, args: ProposeArgs) -> Result<(), CliError> {
    let deadline = args
        .deadline
        .map(|d| {
            jiff::SignedDuration::try_from(d)
                .ok()
                .and_then(|d| jiff::Timestamp::now().checked_add(d).ok())
                .ok_or_else(|| {
                    CliError::new(Exit::Usage, anyhow::anyhow!("--deadline is too far away"))
                })
        })
        .transpose()?;
    let proposal = votes.propose(
        &ctx.agent,
        &args.text,
        Voters::parse(&args.voters)?,
        Quorum::parse(&args.quorum)?,
        deadline,
    )?;
    if ctx.json {
        return output::json(&votes.show(&proposal.id)?);
    }
    output::line(&format!(
        "proposed {}: {} of {} to approve ({})",
        proposal.id,
        proposal.quorum,
        proposal.eligible.len(),
        proposal.eligible.join(", ")
    ))
}

fn cast(ctx: &Context, votes: &Votes, args: CastArgs) -> Result<(), CliError> {
    let standing = votes.cast(&args.id, &ctx.agent, args.vote == "yes", args.reason)?;
    print(ctx, &standing)
}

fn print(ctx: &Context, standing: &Standing) -> Result<(), CliError> {
    if ctx.json {
        return output::json(standing);
    }
    let yes = standing.votes.iter().filter(|b| b.yes).count();
    let mut text = format!(
        "{} \"{}\" by {}: {} ({yes} yes, {} no; {} of {} needed)",
        standing.id,
        standing.text,
        standing.proposer,
        standing.outcome,
        standing.votes.len() - yes,
        standing.quorum,
        standing.voters.len()
    );
    for ballot in &standing.votes {
        text.push_str(&format!(
            "\n  {} {}{}",
            ballot.agent,
            if ballot.yes { "yes" } else { "no" },
            ballot
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!(": {r}"))
        ));
    }
    output::line(&text)
}
