//! One certificate order, RFC 8555 §7.4 (docs/reference.md §3, `tls.acme`): reuse or register
//! the account, order the domains, answer each HTTP-01 challenge through [`Http01Challenges`],
//! finalize with a fresh key, download the chain, and cache it.

use std::time::Duration;

use instant_acme::{
    Account, AccountBuilder, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    Order, OrderStatus, RetryPolicy,
};
use log::info;

use super::{AcmeSettings, cache::CacheDir, issued::IssuedCertificate};
use crate::tls::challenges::Http01Challenges;

/// How long the CA may take to validate and to sign: pebble needs well under a second, Let's
/// Encrypt a few seconds; past this the attempt counts as failed and is retried with backoff.
const ORDER_PATIENCE: Duration = Duration::from_secs(90);

/// Orders a certificate for `settings.domains` and caches it, logging each step in one line.
pub(crate) async fn obtain(
    settings: &AcmeSettings,
    cache: &CacheDir,
    challenges: &Http01Challenges,
) -> Result<IssuedCertificate, String> {
    let account = account(settings, cache).await?;
    info!(
        "acme: ordering a certificate for {} from {}",
        settings.domains.join(", "),
        settings.directory_url
    );
    let (chain_pem, key_pem) = match order(settings, &account, challenges).await {
        Err(err) if err.contains("accountDoesNotExist") => {
            // The CA lost or deleted the account; register a fresh one on the next attempt.
            cache.forget_account();
            return Err(err);
        }
        other => other?,
    };
    let issued = IssuedCertificate::from_pem(chain_pem.as_bytes(), key_pem.as_bytes())
        .map_err(|err| format!("the CA's answer is unusable: {err}"))?;
    cache.store_certificate(
        &settings.directory_url,
        &settings.domains,
        &chain_pem,
        &key_pem,
    )?;
    Ok(issued)
}

fn account_builder(settings: &AcmeSettings) -> Result<AccountBuilder, String> {
    let built = match &settings.ca_file {
        Some(ca_file) => Account::builder_with_root(ca_file),
        None => Account::builder(),
    };
    built.map_err(|err| format!("no HTTPS client for the ACME directory ({err})"))
}

async fn account(settings: &AcmeSettings, cache: &CacheDir) -> Result<Account, String> {
    let builder = account_builder(settings)?;
    let directory_url = &settings.directory_url;
    if let Some(credentials) = cache.account(directory_url) {
        return builder
            .from_credentials(credentials)
            .await
            .map_err(|err| format!("the ACME directory {directory_url} is unreachable ({err})"));
    }
    let address = settings.contact.trim_start_matches("mailto:");
    let contact = format!("mailto:{address}");
    let new_account = NewAccount {
        contact: &[&contact],
        terms_of_service_agreed: settings.accept_terms_of_service,
        only_return_existing: false,
    };
    let (account, credentials) = builder
        .create(&new_account, directory_url.clone(), None)
        .await
        .map_err(|err| format!("registering with {directory_url} failed ({err})"))?;
    info!("acme: registered account {}", account.id());
    cache.store_account(directory_url, credentials)?;
    Ok(account)
}

/// Returns the PEM chain and the PEM key of the new certificate.
async fn order(
    settings: &AcmeSettings,
    account: &Account,
    challenges: &Http01Challenges,
) -> Result<(String, String), String> {
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|domain| Identifier::Dns(domain.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|err| format!("the CA refused the order ({err})"))?;
    let mut published = PublishedTokens::new(challenges);
    answer_challenges(&mut order, &mut published).await?;
    let patience = RetryPolicy::new().timeout(ORDER_PATIENCE);
    let status = order
        .poll_ready(&patience)
        .await
        .map_err(|err| format!("validation failed ({err})"))?;
    drop(published);
    if status != OrderStatus::Ready {
        let problem = order.state().error.as_ref().map(ToString::to_string);
        return Err(format!(
            "validation failed: the order is {status:?} ({})",
            problem.unwrap_or_else(|| "no detail from the CA".to_owned())
        ));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|err| format!("finalizing the order failed ({err})"))?;
    let chain_pem = order
        .poll_certificate(&patience)
        .await
        .map_err(|err| format!("downloading the certificate failed ({err})"))?;
    Ok((chain_pem, key_pem))
}

/// Puts up the key authorization of every pending authorization and tells the CA to look.
async fn answer_challenges(
    order: &mut Order,
    published: &mut PublishedTokens<'_>,
) -> Result<(), String> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|err| format!("an authorization is unreadable ({err})"))?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => return Err(format!("an authorization is {status:?}")),
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or("the CA offers no http-01 challenge")?;
        let domain = challenge.identifier().to_string();
        published.publish(&challenge.token, challenge.key_authorization().as_str());
        challenge
            .set_ready()
            .await
            .map_err(|err| format!("the CA did not take the challenge for {domain} ({err})"))?;
        info!("acme: challenge ready for {domain} (http-01)");
    }
    Ok(())
}

/// The tokens this order put up for the CA, taken down when the order ends, however it ends.
struct PublishedTokens<'a> {
    challenges: &'a Http01Challenges,
    tokens: Vec<String>,
}

impl<'a> PublishedTokens<'a> {
    fn new(challenges: &'a Http01Challenges) -> Self {
        Self {
            challenges,
            tokens: Vec::new(),
        }
    }

    fn publish(&mut self, token: &str, key_authorization: &str) {
        self.challenges
            .insert(token.to_owned(), key_authorization.to_owned());
        self.tokens.push(token.to_owned());
    }
}

impl Drop for PublishedTokens<'_> {
    fn drop(&mut self) {
        for token in self.tokens.drain(..) {
            self.challenges.remove(&token);
        }
    }
}
