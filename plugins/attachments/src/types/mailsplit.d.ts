// mailsplit ships no types; this declares the parts this plugin uses.
declare module 'mailsplit' {
  import { Transform } from 'node:stream';
  export interface MimeHeaders {
    get(key: string): string[];
  }
  export interface MimeNode {
    type: 'node';
    parentNode?: MimeNode;
    multipart: string | false;
    rfc822: boolean;
    messageNode?: boolean;
    encoding: string | false;
    contentType: string | false;
    disposition: string | false;
    headers: MimeHeaders;
    _parsedContentType?: { value: string; params: Record<string, string> };
    _parsedContentDisposition?: { value: string; params: Record<string, string> };
    getDecoder(): Transform;
  }
  export type SplitterChunk = MimeNode | { type: 'data'; value: Buffer } | { type: 'body'; value: Buffer; node: MimeNode };
  export class Splitter extends Transform {
    constructor(options?: { ignoreEmbedded?: boolean; maxHeadSize?: number; defaultInlineEmbedded?: boolean });
  }
}
