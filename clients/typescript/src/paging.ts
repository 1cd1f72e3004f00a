// Pagination as async iterables: `for await (const run of client.listRuns({pageSize: 50}))`
// walks every page, fetching the next one only when the loop gets there.

/** One page: its items and the token of the next ("" after the last page). */
export interface Page<T> {
  readonly items: readonly T[];
  readonly nextPageToken: string;
}

/**
 * Every item of every page, from `fetchPage("")` on, following each next page token. A server
 * that hands back a token it gave before would make the walk endless: that throws instead.
 */
export async function* paginate<T>(fetchPage: (pageToken: string) => Promise<Page<T>>): AsyncGenerator<T> {
  const seen = new Set<string>();
  let token = "";
  do {
    const page = await fetchPage(token);
    yield* page.items;
    token = page.nextPageToken;
    if (seen.has(token)) {
      throw new Error(`the server repeated page token ${JSON.stringify(token)}; stopping the iteration`);
    }
    seen.add(token);
  } while (token !== "");
}

/** Every item of an async iterable in an array (for lists known to be small). */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) {
    all.push(item);
  }
  return all;
}
