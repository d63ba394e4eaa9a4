// The GraphQL documents the explorer sends. Page sizes stay under the API's cost limit.

export const GRAPH_PAGE = 60;
export const RING_PAGE = 80;

export const ME = `query Me { me { role keyId } }`;

const DECISION = `
  userId action dryRun policyVersion modelVersion decidedAt refer
  lines { line action current limit change tempLimit tempUntil reasons { code line en zh } }
  reasons { code line en zh }
  counterfactuals { lever current needed action en zh }`;

export const USER = `
query ExploreUser($id: ID!) {
  user(id: $id) {
    id
    profile { name city lifecycle signupAt }
    fraudRisk relationalRisk ownRisk modelVersion scoredAt
    creditFeatures {
      creditScore income monthsOnBook repaymentHistory overdueCount worstDpd utilisation
      monthlySpend activeDays30d
    }
    products { productId limit balance status since product { name kind } }
    limits {
      totalLimit totalBalance
      lines { line limit balance available tempLimit tempUntil status }
    }
    ring { id size kind suspicion why risk { scoredMembers meanFraudRisk maxFraudRisk } }
    decisionHistory(first: 10) { ${DECISION} }
    flags { id reason by at }
  }
}`;

export const DRY_RUN = `
mutation PreviewDecision($id: ID!) {
  decideLimit(userId: $id, dryRun: true) { ${DECISION} }
}`;

export const FLAGS = `query Flags($id: ID!) { user(id: $id) { id flags { id reason by at } } }`;

export const FLAG = `
mutation Flag($id: ID!, $reason: String!) {
  flagUser(userId: $id, reason: $reason) { id userId reason by at }
}`;

const NODE = `id fraudRisk relationalRisk profile { name }`;

const RING = `
  id size kind suspicion why memberIds
  sharedItems { relType label id members }
  directLinks { relType src dst count }`;

// Users by id, `ids.length` at a time (the API allows 30 aliases per operation).
export const USERS_PER_QUERY = 25;
export function usersById(count) {
  const vars = Array.from({ length: count }, (_, i) => `$i${i}: ID!`).join(", ");
  const fields = Array.from({ length: count }, (_, i) => `u${i}: user(id: $i${i}) { ${NODE} }`).join("\n  ");
  return `query UsersById(${vars}) {\n  ${fields}\n}`;
}

// A user's links to `depth` steps, and its ring.
export const NETWORK = `
query Network($id: ID!, $depth: Int!) {
  user(id: $id) {
    ${NODE}
    linkedAccounts(depth: $depth, first: ${GRAPH_PAGE}) {
      totalCount
      edges { depth links { relType itemLabel itemId fromUser count } node { ${NODE} } }
    }
    ring { ${RING} }
  }
}`;

export const RING_BY_ID = `query RingById($id: ID!) { ring(id: $id) { ${RING} } }`;

export const DEVICE = `
query Device($id: ID!) {
  device(id: $id) { id kind os users(first: ${GRAPH_PAGE}) { ${NODE} } }
}`;
