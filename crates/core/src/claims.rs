//! Detects a final answer that claims an action ("I have sent the email")
//! when no successful state-changing tool call backs it: the "silent success"
//! failure, where an agent reports work it never did.
//!
//! The check is deliberately lexical and conservative: it looks for a
//! first-person or passive past-tense action verb. It cannot prove a claim
//! true, only flag claims that nothing in the journal could support.

/// Past-tense verbs of actions that change the world.
const ACTION_VERBS: &[&str] = &[
    "sent",
    "emailed",
    "e-mailed",
    "messaged",
    "texted",
    "updated",
    "created",
    "booked",
    "scheduled",
    "deleted",
    "removed",
    "cancelled",
    "canceled",
    "refunded",
    "charged",
    "submitted",
    "posted",
    "saved",
    "assigned",
    "notified",
    "processed",
    "filed",
    "logged",
    "added",
    "changed",
    "issued",
    "placed",
    "transferred",
    "paid",
    "escalated",
    "forwarded",
    "published",
    "deployed",
    "closed",
    "opened",
    "reset",
    "modified",
    "recorded",
    "registered",
];

/// Subjects that make a sentence a claim by the agent itself.
const CLAIM_LEADS: &[&str] =
    // Bare "was"/"were" are left out: "the ticket was closed on May 3" is
    // usually a fact read back from a tool, not a claim of the agent's own.
    &["i have ", "i've ", "i ", "we have ", "we've ", "we ", "has been ", "have been ", "is now "];

/// Sentences of `answer` that claim an action was taken.
pub fn action_claims(answer: &str) -> Vec<String> {
    answer
        .split(['.', '!', '\n', ';'])
        .map(str::trim)
        .filter(|sentence| !sentence.is_empty() && claims_action(sentence))
        .map(str::to_owned)
        .collect()
}

fn claims_action(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    // Questions, offers and conditionals are not claims.
    if sentence.ends_with('?')
        || ["if ", "will ", "would ", "can ", "could ", "should ", "shall ", "i'll ", "please "]
            .iter()
            .any(|w| lower.starts_with(w))
    {
        return false;
    }
    for lead in CLAIM_LEADS {
        let mut search_from = 0;
        while let Some(pos) = lower[search_from..].find(lead) {
            let start = search_from + pos;
            let at_word_start = start == 0 || !lower.as_bytes()[start - 1].is_ascii_alphanumeric();
            if at_word_start {
                let rest = &lower[start + lead.len()..];
                // Allow one adverb ("I have already sent", "was successfully updated").
                let mut next = rest.split_whitespace().take(2);
                let first = next.next().unwrap_or("").trim_matches(|c: char| !c.is_alphanumeric() && c != '-');
                let second = next.next().unwrap_or("").trim_matches(|c: char| !c.is_alphanumeric() && c != '-');
                if ACTION_VERBS.contains(&first) || (is_adverb(first) && ACTION_VERBS.contains(&second)) {
                    return true;
                }
            }
            search_from = start + lead.len();
        }
    }
    false
}

fn is_adverb(word: &str) -> bool {
    word.ends_with("ly") || ["already", "just", "now", "also", "since", "then"].contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_first_person_and_passive_claims() {
        assert_eq!(action_claims("I have sent the email to John."), vec!["I have sent the email to John"]);
        assert_eq!(action_claims("Done. The ticket has been updated!").len(), 1);
        assert_eq!(action_claims("I've already booked the meeting").len(), 1);
        assert_eq!(action_claims("I refunded the order").len(), 1);
    }

    #[test]
    fn ignores_offers_questions_and_plain_answers() {
        assert!(action_claims("Your plan is Pro and renews on May 1.").is_empty());
        assert!(action_claims("Should I send the email?").is_empty());
        assert!(action_claims("I will send the email once you confirm").is_empty());
        assert!(action_claims("If you want, I can update the ticket").is_empty());
        assert!(action_claims("I found 3 open tickets").is_empty());
    }
}
