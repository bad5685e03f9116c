// Package pki is CrossLogic's internal certificate authority and the
// mutual-TLS configuration built on it.
//
// # What each certificate proves
//
// A root is a self-signed ECDSA P-256 CA certificate whose private key is
// kept by the control plane, sealed at rest with a 32-byte data key
// (AES-256-GCM; see Seal). Roots sign leaves directly: MaxPathLen is 0, so
// there are no intermediates, and a chain is always [leaf, root].
//
// A leaf proves one identity, carried as a single SPIFFE-style URI SAN in
// the trust domain "crosslogic": spiffe://crosslogic/gateway,
// spiffe://crosslogic/control-plane, or spiffe://crosslogic/node/<id>.
// Nodes run on spot machines whose IP addresses come and go, so peers are
// verified by chain and identity, never by hostname: the gateway dialing
// node "a" requires a certificate naming node "a", whatever address it
// reached. A leaf's DNS and IP SANs are only what the control plane chose
// to let the node claim; a CSR cannot choose its own identity, because
// SignCSR ignores the CSR's subject and SANs.
//
// A node's private key is made on the node and never leaves it: the agent
// sends a CSR, and the control plane answers with a leaf and the trust
// bundle. The gateway and the control plane issue their own leaves
// in-process with CA.Issue.
//
// # Lifetimes and renewal
//
// Leaves live DefaultLeafLifetime (24 hours) and are renewed at about two
// thirds of their lifetime (RenewAt), with jitter so that a fleet that
// joined together does not renew together. Revocation is therefore mostly
// "stop renewing": a removed node's certificate is useless within a day,
// and sooner for shorter lifetimes. Roots live DefaultRootLifetime (ten
// years) and no leaf outlives the root that signed it.
//
// TLS configurations read their certificate and trust bundle through a
// Source at every handshake, so a renewed certificate or a new bundle takes
// effect on the next connection without restarting a listener, and
// connections already open keep working.
//
// # Root rotation
//
// A bundle holds one root, or two while the root rotates. LoadCA trusts
// every root it is given and signs with the last one, so the order of the
// stored roots is what moves a rotation forward:
//
//  1. Add a new root (NewRoot) and load [new, old]: both are trusted,
//     the old root still signs.
//  2. Bundles now carry both roots. Wait until every agent has renewed
//     once, so that everyone trusts the new root.
//  3. Load [old, new]: the new root signs. New leaves chain to it and are
//     accepted everywhere, while old leaves still verify against the old
//     root.
//  4. After the longest leaf lifetime has passed, no valid leaf chains to
//     the old root: drop it, and bundles carry the new root alone.
//
// # Limitations
//
// There is no revocation list and no OCSP; short lifetimes stand in for
// them. An agent's first contact pins the signing root's fingerprint
// (PinnedConfig), so a join command created before step 3 of a rotation
// stops working after it and must be created again.
//
// A certificate proves who a peer is, not that it is still wanted: a
// removed node's certificate verifies until it expires. The control plane's
// handlers refuse a node the registry no longer has, and the gateway only
// dials nodes in its registry snapshot.
package pki
