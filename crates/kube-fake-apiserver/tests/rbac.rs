//! The fake's RBAC authorizer through the real kube client: what a ServiceAccount with a token
//! from TokenRequest may do under Roles, ClusterRoles and their bindings. The recorded
//! exchanges it is pinned to are replayed in golden.rs (rbac-ssa-create.json).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube_fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

fn from<T: k8s_openapi::serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// A server with namespaces `a` and `b`, ServiceAccount `a/bot`, and a client using its token.
async fn setup() -> (FakeApiServer, kube::Client, kube::Client) {
    let srv = FakeApiServer::start().await;
    let admin = srv.client();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for ns in ["a", "b"] {
        namespaces
            .create(&PostParams::default(), &from(json!({"metadata": {"name": ns}})))
            .await
            .unwrap();
    }
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "a");
    sas.create(&PostParams::default(), &from(json!({"metadata": {"name": "bot"}})))
        .await
        .unwrap();
    let issued = sas
        .create_token_request("bot", &PostParams::default(), &from(json!({"spec": {}})))
        .await
        .unwrap();
    let token = issued.status.unwrap().token;
    let bot = srv.client_with_token(&token, "bot");
    (srv, admin, bot)
}

fn status(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn create<K>(api: &Api<K>, v: Value)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize,
{
    api.create(&PostParams::default(), &from::<K>(v)).await.unwrap();
}

#[tokio::test]
async fn token_request_needs_the_service_account_and_authenticates_as_it() {
    let (_srv, admin, bot) = setup().await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin, "a");
    let missing = sas
        .create_token_request(
            "ghost",
            &PostParams::default(),
            &from::<TokenRequest>(json!({"spec": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(missing).0, 404);
    let short = sas
        .create_token_request(
            "bot",
            &PostParams::default(),
            &from::<TokenRequest>(json!({"spec": {"expirationSeconds": 599}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status(short).0, 422);
    // Bound to nothing, the ServiceAccount may not even list Secrets in its own namespace.
    let (code, message) = status(
        Api::<Secret>::namespaced(bot, "a")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "secrets is forbidden: User \"system:serviceaccount:a:bot\" cannot list resource \"secrets\" in API group \"\" in the namespace \"a\""
    );
}

#[tokio::test]
async fn role_bindings_apply_in_their_namespace_and_cluster_bindings_everywhere() {
    let (_srv, admin, bot) = setup().await;
    create(
        &Api::<Role>::namespaced(admin.clone(), "b"),
        json!({"metadata": {"name": "cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]}),
    )
    .await;
    // A ServiceAccount subject without a namespace means the binding's namespace: not a/bot.
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "b"),
        json!({"metadata": {"name": "cm-local"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
    )
    .await;
    let in_b: Api<ConfigMap> = Api::namespaced(bot.clone(), "b");
    assert_eq!(status(in_b.list(&ListParams::default()).await.unwrap_err()).0, 403);
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "b"),
        json!({"metadata": {"name": "cm-bot"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "a"}]}),
    )
    .await;
    in_b.list(&ListParams::default()).await.unwrap();
    create(&in_b, json!({"metadata": {"name": "x"}})).await;
    // The Role in b grants nothing in a.
    let in_a: Api<ConfigMap> = Api::namespaced(bot.clone(), "a");
    assert_eq!(status(in_a.get("x").await.unwrap_err()).0, 403);

    // A ClusterRole bound cluster-wide to a group of the user: everywhere, */status included.
    create(
        &Api::<ClusterRole>::all(admin.clone()),
        json!({"metadata": {"name": "ns-reader"}, "rules": [{"apiGroups": ["*"], "resources": ["namespaces", "*/status"], "verbs": ["get", "list"]}]}),
    )
    .await;
    create(
        &Api::<ClusterRoleBinding>::all(admin.clone()),
        json!({"metadata": {"name": "ns-reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-reader"},
               "subjects": [{"kind": "Group", "name": "system:serviceaccounts:a"}]}),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(bot.clone());
    assert!(namespaces.list(&ListParams::default()).await.unwrap().items.len() >= 2);
    namespaces.get_status("b").await.unwrap();
    let (code, message) = status(
        namespaces
            .patch(
                "b",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert!(message.starts_with("namespaces \"b\" is forbidden: "), "{message}");
    assert!(
        message.ends_with("cannot patch resource \"namespaces\" in API group \"\" in the namespace \"b\""),
        "{message}"
    );
}

#[tokio::test]
async fn resource_names_limit_named_requests_only_and_missing_roles_are_reported() {
    let (_srv, admin, bot) = setup().await;
    create(
        &Api::<Role>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "one-lease"}, "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["mine"], "verbs": ["get", "create", "list"]}]}),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "one-lease"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-lease"},
               "subjects": [{"kind": "User", "name": "system:serviceaccount:a:bot"}]}),
    )
    .await;
    create(
        &Api::<Lease>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "mine"}}),
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(bot.clone(), "a");
    leases.get("mine").await.unwrap();
    assert_eq!(status(leases.get("other").await.unwrap_err()).0, 403);
    // create has no name to match, nor has a plain list; a list of exactly that name has.
    let (code, message) = status(create_lease(&leases, "mine").await);
    assert_eq!(code, 403);
    assert!(
        message.starts_with("leases.coordination.k8s.io is forbidden: "),
        "{message}"
    );
    assert_eq!(status(leases.list(&ListParams::default()).await.unwrap_err()).0, 403);
    leases
        .list(&ListParams::default().fields("metadata.name=mine"))
        .await
        .unwrap();

    // A binding to a Role that does not exist grants nothing and says why.
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "a"}]}),
    )
    .await;
    let (_, message) = status(leases.get("other").await.unwrap_err());
    assert!(
        message.ends_with(": RBAC: role.rbac.authorization.k8s.io \"gone\" not found"),
        "{message}"
    );
}

async fn create_lease(leases: &Api<Lease>, name: &str) -> kube::Error {
    leases
        .create(&PostParams::default(), &from(json!({"metadata": {"name": name}})))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn server_side_apply_that_creates_needs_create() {
    let (_srv, admin, bot) = setup().await;
    let rules = |verbs: &[&str]| json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]);
    let roles = Api::<Role>::namespaced(admin.clone(), "a");
    create(&roles, json!({"metadata": {"name": "s"}, "rules": rules(&["patch"])})).await;
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "s"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "s"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "a"}]}),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(bot, "a");
    let apply = || async {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}});
        secrets.patch("s", &PatchParams::apply("bot"), &Patch::Apply(s)).await
    };
    let (code, message) = status(apply().await.unwrap_err());
    assert_eq!(code, 403);
    assert_eq!(
        message,
        "secrets \"s\" is forbidden: User \"system:serviceaccount:a:bot\" cannot create resource \"secrets\" in API group \"\" in the namespace \"a\""
    );
    roles
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": rules(&["patch", "create"])})),
        )
        .await
        .unwrap();
    apply().await.unwrap();
    // Once it exists, patch alone is enough.
    roles
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": rules(&["patch"])})),
        )
        .await
        .unwrap();
    apply().await.unwrap();
}

/// Asks, as the client's user, whether it may `verb` `resource` in namespace `ns`.
async fn can_i(client: &kube::Client, verb: &str, resource: &str, ns: &str) -> Value {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = from::<SelfSubjectAccessReview>(json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": "", "resource": resource, "namespace": ns}}
    }));
    let answered = reviews.create(&PostParams::default(), &review).await.unwrap();
    serde_json::to_value(answered.status.unwrap()).unwrap()
}

#[tokio::test]
async fn self_subject_access_review_answers_for_the_requesting_user_without_acting() {
    let (srv, admin, bot) = setup().await;
    // Every authenticated user may ask, even with no RBAC of its own.
    assert_eq!(can_i(&bot, "list", "configmaps", "a").await, json!({"allowed": false}));
    assert_eq!(can_i(&admin, "list", "configmaps", "a").await["allowed"], json!(true));
    create(
        &Api::<Role>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(admin.clone(), "a"),
        json!({"metadata": {"name": "bot-reads"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
    )
    .await;
    assert_eq!(
        can_i(&bot, "list", "configmaps", "a").await,
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"a/bot-reads\" of Role \"reader\" to ServiceAccount \"bot/a\""})
    );
    // The binding is namespaced: nothing in b, and no other verb.
    assert_eq!(can_i(&bot, "list", "configmaps", "b").await["allowed"], json!(false));
    assert_eq!(can_i(&bot, "delete", "configmaps", "a").await["allowed"], json!(false));
    // Asking changed nothing: no ConfigMap was listed or created on the bot's behalf.
    let cms: Api<ConfigMap> = Api::namespaced(admin, "a");
    assert!(cms.list(&ListParams::default()).await.unwrap().items.is_empty());
    drop(srv);
}

#[tokio::test]
async fn self_subject_review_names_the_requesting_user() {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let (_srv, admin, bot) = setup().await;
    let whoami = |client: kube::Client| async move {
        let reviews: Api<SelfSubjectReview> = Api::all(client);
        let answer = reviews
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .unwrap();
        answer.status.unwrap().user_info.unwrap()
    };
    let bot_user = whoami(bot).await;
    assert_eq!(bot_user.username.as_deref(), Some("system:serviceaccount:a:bot"));
    assert!(
        bot_user
            .groups
            .unwrap()
            .contains(&"system:serviceaccounts:a".to_string())
    );
    assert_eq!(whoami(admin).await.username.as_deref(), Some("kubernetes-admin"));
}
